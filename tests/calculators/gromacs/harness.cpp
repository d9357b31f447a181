// Calls a model file the way GROMACS's NNPot interface (TorchModel) does, without GROMACS.
//
//   harness MODEL DIR REAL INPUT...
//
// MODEL  the .pt file; DIR  a folder with the inputs as raw little-endian arrays:
//        positions.bin (N*3 real, nm), numbers.bin (N int32), box.bin (9 real, nm, rows
//        are the box vectors), pbc.txt ("xyz" or "xy"), pairs.bin (P*2 int32),
//        shifts.bin (P*3 real, nm);
// REAL   "float" (GROMACS's default mixed precision) or "double" (a GMX_DOUBLE build);
// INPUT  the nnpot-model-input names in the .mdp's order: atom-positions atom-numbers
//        box pbc atom-pairs pair-shifts.
//
// As GROMACS does: graph optimisation off, the model loaded on the CPU and put in eval
// mode; positions, box converted to float32 (positions requiring gradients), numbers and
// pairs int32, pbc bool, shifts left in the real type; the inputs passed positionally.
// Forces are the second output when the model returns a tuple of more than one, else
// minus the gradient of the energy with respect to the first input. Energy and forces are
// converted to the real type. Prints "energy E" then one "fx fy fz" line per atom
// (kJ/mol, kJ/mol/nm); an error in the model exits with status 3 and its message.

#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/script.h>  // GROMACS includes torch/torch.h too: not needed here, slower to compile

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

template <typename T>
std::vector<T> readArray(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw std::runtime_error("cannot read " + path);
  std::vector<char> bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  std::vector<T> values(bytes.size() / sizeof(T));
  std::memcpy(values.data(), bytes.data(), values.size() * sizeof(T));
  return values;
}

std::string readText(const std::string& path) {
  std::ifstream file(path);
  std::string text;
  file >> text;
  return text;
}

template <typename Real>
int run(const std::string& modelPath, const std::string& dir, const std::vector<std::string>& names) {
  const auto realType = std::is_same<Real, double>::value ? torch::kFloat64 : torch::kFloat32;
  const torch::Device device(torch::kCPU);

  torch::jit::setGraphExecutorOptimize(false);
  torch::jit::script::Module model = torch::jit::load(modelPath, device);
  model.eval();

  // the arrays GROMACS holds (kept alive: from_blob does not copy)
  std::vector<Real> positions = readArray<Real>(dir + "/positions.bin");
  std::vector<int32_t> numbers = readArray<int32_t>(dir + "/numbers.bin");
  const int64_t n = static_cast<int64_t>(numbers.size());

  std::vector<torch::jit::IValue> inputs;
  std::vector<Real> box, shifts;
  std::vector<int32_t> pairs;
  for (const std::string& name : names) {
    if (name == "atom-positions") {
      auto options = torch::TensorOptions().dtype(realType).requires_grad(true);
      torch::Tensor x = torch::from_blob(positions.data(), {n, 3}, options).to(torch::kFloat32);
      inputs.push_back(x.to(device).requires_grad_(true));
    } else if (name == "atom-numbers") {
      inputs.push_back(torch::from_blob(numbers.data(), {n}, torch::TensorOptions().dtype(torch::kInt32)).to(device));
    } else if (name == "box") {
      box = readArray<Real>(dir + "/box.bin");
      torch::Tensor b = torch::from_blob(box.data(), {3, 3}, torch::TensorOptions().dtype(realType));
      inputs.push_back(b.to(torch::kFloat32).to(device));
    } else if (name == "pbc") {
      torch::Tensor p = torch::tensor({true, true, true}, torch::TensorOptions().dtype(torch::kBool));
      const std::string kind = readText(dir + "/pbc.txt");
      if (kind == "xy") {
        p[2] = false;
      } else if (kind != "xyz") {
        throw std::runtime_error("PBC type is not supported: " + kind);
      }
      inputs.push_back(p.to(device));
    } else if (name == "atom-pairs") {
      pairs = readArray<int32_t>(dir + "/pairs.bin");
      const int64_t p = static_cast<int64_t>(pairs.size() / 2);
      inputs.push_back(torch::from_blob(pairs.data(), {p, 2}, torch::TensorOptions().dtype(torch::kInt32)).to(device));
    } else if (name == "pair-shifts") {
      shifts = readArray<Real>(dir + "/shifts.bin");
      const int64_t p = static_cast<int64_t>(shifts.size() / 3);
      inputs.push_back(torch::from_blob(shifts.data(), {p, 3}, torch::TensorOptions().dtype(realType)).to(device));
    } else {
      throw std::runtime_error("Unknown input to NN model: " + name);
    }
  }

  c10::intrusive_ptr<c10::ivalue::Tuple> outputs;
  try {
    c10::IValue out = model.forward(inputs);
    outputs = out.isTuple() ? out.toTuple() : c10::ivalue::Tuple::create({out.toTensor()});
  } catch (const std::exception& e) {
    std::cerr << "Error during evaluation of the neural network model: " << e.what() << std::endl;
    return 3;
  }

  torch::Tensor energy = outputs->elements()[0].toTensor();
  torch::Tensor forces;
  if (outputs->elements().size() > 1) {
    forces = outputs->elements()[1].toTensor().to(torch::kCPU);
  } else {
    inputs[0].toTensor().retain_grad();
    energy.backward();
    forces = -1. * inputs[0].toTensor().grad().to(torch::kCPU);
  }
  energy = energy.to(realType).to(torch::kCPU);
  forces = forces.to(realType).to(torch::kCPU);
  auto f = forces.accessor<Real, 2>();
  std::printf("energy %.17g\n", static_cast<double>(energy.template item<Real>()));
  for (int64_t i = 0; i < f.size(0); ++i) {
    std::printf("%.17g %.17g %.17g\n", static_cast<double>(f[i][0]), static_cast<double>(f[i][1]),
                static_cast<double>(f[i][2]));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s MODEL DIR float|double INPUT...\n", argv[0]);
    return 2;
  }
  const std::string real = argv[3];
  std::vector<std::string> names(argv + 4, argv + argc);
  try {
    if (real == "double") return run<double>(argv[1], argv[2], names);
    if (real == "float") return run<float>(argv[1], argv[2], names);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "REAL must be float or double, not %s\n", real.c_str());
  return 2;
}
