/* The TorchScript and AOTInductor runners of pair_style mlff (see model_runner.h). */

#include "model_runner.h"

#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/script.h>

#include <algorithm>
#include <exception>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

namespace mlff {
namespace {

constexpr int64_t FORMAT_VERSION = 1;
const char *const REQUIRED[] = {"format_version", "symbols",        "masses",
                                "cutoff",         "num_message_passing", "interaction_range",
                                "dtype",          "committee_size"};

// the first line of an exception message (TorchScript errors carry long backtraces)
std::string first_line(const std::exception &exc)
{
  std::string text = exc.what();
  auto end = text.find('\n');
  return end == std::string::npos ? text : text.substr(0, end);
}

void check_format(const std::string &path, int64_t format)
{
  if (format != FORMAT_VERSION) {
    std::ostringstream message;
    message << "'" << path << "' is in deployment format " << format
            << ", this plugin reads format " << FORMAT_VERSION
            << ". Deploy the model again with the installed mlff (`mlff deploy` also rebuilds "
               "the plugin)";
    throw std::runtime_error(message.str());
  }
}

bool ends_with(const std::string &text, const std::string &suffix)
{
  return text.size() >= suffix.size() &&
      text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/* ---------------------------------------------------------------------- */

class TorchScriptRunner : public ModelRunner {
 public:
  explicit TorchScriptRunner(const std::string &path)
  {
    // TorchScript is deprecated in PyTorch; libtorch still runs it, and `mlff deploy
    // --format torchscript` writes it for the models that run faster this way.
    // The simple executor: the profiling executor's first calls profile and re-optimise
    // (a slow step each), and its differentiable subgraphs ran ~8% slower than eager
    // PyTorch on MACE; the simple one runs the scripted graph as it is.
    torch::jit::getProfilingMode() = false;
    try {
      module = torch::jit::load(path, torch::kCPU);
    } catch (const std::exception &exc) {
      throw std::runtime_error("cannot load '" + path + "' as a TorchScript model (" +
                               first_line(exc) + "). Write it with `mlff deploy MODEL.mlff --out DIR`");
    }
    module.eval();
    for (const char *name : REQUIRED)
      if (!module.hasattr(name))
        throw std::runtime_error("'" + path +
                                 "' is a TorchScript file but not one written by `mlff deploy` "
                                 "(it has no '" + name + "' attribute)");
    check_format(path, module.attr("format_version").toInt());
    model_info.format_version = module.attr("format_version").toInt();
    for (const auto &value : module.attr("symbols").toListRef())
      model_info.symbols.push_back(value.toStringRef());
    for (const auto &value : module.attr("masses").toListRef())
      model_info.masses.push_back(value.toDouble());
    model_info.cutoff = module.attr("cutoff").toDouble();
    model_info.layers = static_cast<int>(module.attr("num_message_passing").toInt());
    model_info.interaction_range = module.attr("interaction_range").toDouble();
    model_info.committee_size = static_cast<int>(module.attr("committee_size").toInt());
    model_info.dtype = module.attr("dtype").toStringRef();
    model_info.memory_per_edge =
        module.hasattr("memory_per_edge") ? module.attr("memory_per_edge").toDouble() : 0.0;
  }

  std::string description() const override { return "TorchScript"; }

  std::pair<torch::Tensor, torch::Tensor> run(const torch::Tensor &species,
                                              const torch::Tensor &edge_index,
                                              const torch::Tensor &edge_vectors,
                                              int64_t num_local) override
  {
    std::vector<torch::jit::IValue> inputs{species, edge_index, edge_vectors, num_local};
    auto output = module.forward(inputs).toTuple();
    return {output->elements()[0].toTensor().to(torch::kFloat64).contiguous(),
            output->elements()[1].toTensor().to(torch::kFloat64).contiguous()};
  }

  void set_chunk(int64_t atoms) override
  {
    if (module.hasattr("max_atoms_per_chunk")) module.setattr("max_atoms_per_chunk", atoms);
  }

 torch::jit::Module *script_module() override { return &module; }

 private:
  torch::jit::Module module;
};

/* ---------------------------------------------------------------------- */

class AotiRunner : public ModelRunner {
 public:
  explicit AotiRunner(const std::string &path) : chunk(0)
  {
    try {
      loader = std::make_unique<torch::inductor::AOTIModelPackageLoader>(path);
    } catch (const std::exception &exc) {
      throw std::runtime_error("cannot load '" + path + "' as an AOTInductor package (" +
                               first_line(exc) +
                               "). Write it with `mlff deploy MODEL.mlff --out DIR --format aoti` "
                               "with the torch that this plugin was built against");
    }
    const auto metadata = loader->get_metadata();
    for (const char *name : REQUIRED)
      if (metadata.find(name) == metadata.end())
        throw std::runtime_error("'" + path +
                                 "' is an AOTInductor package but not one written by `mlff "
                                 "deploy` (its metadata has no '" + name + "')");
    model_info.format_version = std::stoll(metadata.at("format_version"));
    check_format(path, model_info.format_version);
    std::istringstream symbols(metadata.at("symbols")), masses(metadata.at("masses"));
    for (std::string symbol; symbols >> symbol;) model_info.symbols.push_back(symbol);
    for (double mass; masses >> mass;) model_info.masses.push_back(mass);
    model_info.cutoff = std::stod(metadata.at("cutoff"));
    model_info.layers = std::stoi(metadata.at("num_message_passing"));
    model_info.interaction_range = std::stod(metadata.at("interaction_range"));
    model_info.committee_size = std::stoi(metadata.at("committee_size"));
    model_info.dtype = metadata.at("dtype");
    auto found = metadata.find("memory_per_edge");
    model_info.memory_per_edge = found == metadata.end() ? 0.0 : std::stod(found->second);
    found = metadata.find("dense_width_input");
    dense_width_input = found != metadata.end() && found->second == "1";
    found = metadata.find("stages_file");
    if (found != metadata.end() && !found->second.empty()) {
      const auto slash = path.rfind('/');
      stages_path = (slash == std::string::npos ? std::string() : path.substr(0, slash + 1)) +
          found->second;
    }
    found = metadata.find("AOTI_DEVICE_KEY");
    device_name = found == metadata.end() ? "cpu" : found->second;
    device = torch::Device(device_name);
  }

  std::string description() const override { return "AOTInductor (" + device_name + ")"; }

  std::pair<torch::Tensor, torch::Tensor> run(const torch::Tensor &species,
                                              const torch::Tensor &edge_index,
                                              const torch::Tensor &edge_vectors,
                                              int64_t num_local) override
  {
    if (chunk <= 0 || num_local <= chunk) return call(species, edge_index, edge_vectors, num_local);
    // ranges of `chunk` local nodes, each on the subgraph within `layers` hops of it
    // (as LammpsModel.forward in deploy.py); the range's nodes first in the subgraph,
    // which the package counts as its local nodes
    using torch::indexing::Slice;
    const auto int64 = torch::TensorOptions().dtype(torch::kInt64);
    const int64_t num_nodes = species.size(0);
    const torch::Tensor sender = edge_index[0], receiver = edge_index[1];
    auto energies = torch::zeros({model_info.committee_size, num_nodes}, torch::kFloat64);
    auto grads = torch::zeros({model_info.committee_size, edge_vectors.size(0), 3}, torch::kFloat64);
    auto local = torch::full({num_nodes}, -1, int64);
    for (int64_t start = 0; start < num_local; start += chunk) {
      const int64_t stop = std::min(start + chunk, num_local);
      auto inside = torch::zeros({num_nodes}, torch::kBool);
      inside.slice(0, start, stop).fill_(true);
      for (int layer = 0; layer < model_info.layers; layer++)
        inside.index_put_({sender.index({inside.index({receiver})})}, true);
      auto halo = inside.clone();
      halo.slice(0, start, stop).fill_(false);
      auto nodes = torch::cat({torch::arange(start, stop, int64), torch::nonzero(halo).flatten()});
      auto edges = torch::nonzero(inside.index({sender}) & inside.index({receiver})).flatten();
      local.index_put_({nodes}, torch::arange(nodes.size(0), int64));
      auto sub = call(species.index({nodes}), local.index({edge_index.index({Slice(), edges})}),
                      edge_vectors.index({edges}), stop - start);
      local.index_put_({nodes}, -1);
      energies.slice(1, start, stop).copy_(sub.first.slice(1, 0, stop - start));
      grads.index_add_(1, edges, sub.second);
    }
    return {energies, grads};
  }

  void set_chunk(int64_t atoms) override { chunk = atoms; }

  // the layer-wise stages: the TorchScript module that `mlff deploy` wrote beside the
  // package (its metadata's stages_file), loaded on first use; nullptr without one
  torch::jit::Module *script_module() override
  {
    if (stages_path.empty()) return nullptr;
    if (!stages) {
      std::ifstream probe(stages_path);
      if (!probe.good())
        throw std::runtime_error("'" + stages_path + "' (the layer-wise stages of this "
                                 "AOTInductor package) is missing or unreadable: keep it "
                                 "beside the package, or use 'pair_style mlff parallel halo'");
      torch::jit::getProfilingMode() = false;
      stages = std::make_unique<torch::jit::Module>(torch::jit::load(stages_path, torch::kCPU));
      stages->eval();
      if (!stages->hasattr("num_stages") || !stages->hasattr("symbols") ||
          stages->attr("symbols").toListRef().size() != model_info.symbols.size())
        throw std::runtime_error("'" + stages_path + "' is not the TorchScript model of this "
                                 "AOTInductor package: deploy the model again");
    }
    return stages.get();
  }

  const std::string &stages_file() const { return stages_path; }

 private:
  // one call of the package; graphs below its smallest traced size (2 nodes, 2 edges)
  // get two extra nodes joined only to each other, whose results are dropped
  std::pair<torch::Tensor, torch::Tensor> call(torch::Tensor species, torch::Tensor edge_index,
                                               torch::Tensor edge_vectors, int64_t num_local)
  {
    const int64_t num_nodes = species.size(0), num_edges = edge_vectors.size(0);
    const bool padded = num_nodes < 2 || num_edges < 2;
    if (padded) {
      const auto int64 = torch::TensorOptions().dtype(torch::kInt64);
      species = torch::cat({species, torch::zeros({2}, int64)});
      auto extra = torch::tensor({num_nodes, num_nodes + 1, num_nodes + 1, num_nodes}, int64)
                       .reshape({2, 2});
      edge_index = torch::cat({edge_index, extra}, 1);
      auto vectors = torch::zeros({2, 3}, edge_vectors.options());
      vectors.index_put_({0, 0}, 1.5);
      vectors.index_put_({1, 0}, -1.5);
      edge_vectors = torch::cat({edge_vectors, vectors});
    }
    std::vector<torch::Tensor> inputs{
        species.to(device), edge_index.to(device), edge_vectors.to(device),
        torch::tensor(num_local, torch::TensorOptions().dtype(torch::kInt64)).to(device)};
    if (dense_width_input)
      inputs.push_back(torch::zeros({dense_width(edge_index, species.size(0))},
                                    torch::TensorOptions().dtype(torch::kInt8).device(device)));
    auto outputs = loader->run(inputs);
    auto energies = outputs[0].to(torch::kCPU, torch::kFloat64);
    auto grads = outputs[1].to(torch::kCPU, torch::kFloat64);
    if (padded) {
      energies = energies.slice(1, 0, num_nodes);
      grads = grads.slice(1, 0, num_edges);
    }
    return {energies.contiguous(), grads.contiguous()};
  }

  // the width of the dense neighbour layout (aoti.py's dense_width): the most edges of
  // one node as sender or as receiver, at least 2
  static int64_t dense_width(const torch::Tensor &edge_index, int64_t num_nodes)
  {
    std::vector<int64_t> counts(2 * num_nodes, 0);
    const int64_t num_edges = edge_index.size(1);
    const auto index = edge_index.contiguous();
    const int64_t *data = index.data_ptr<int64_t>();
    int64_t width = 2;
    for (int row = 0; row < 2; row++)
      for (int64_t e = 0; e < num_edges; e++)
        width = std::max(width, ++counts[row * num_nodes + data[row * num_edges + e]]);
    return width;
  }

  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader;
  bool dense_width_input = false;    // packages of format 1 before the dense layout: no
  std::string stages_path;           // "": no layer-wise stages
  std::unique_ptr<torch::jit::Module> stages;
  std::string device_name;
  torch::Device device{torch::kCPU};
  int64_t chunk;
};

}    // namespace

std::unique_ptr<ModelRunner> load_model_runner(const std::string &path)
{
  if (ends_with(path, ".pt2")) return std::make_unique<AotiRunner>(path);
  return std::make_unique<TorchScriptRunner>(path);
}

}    // namespace mlff
