/* The deployed model behind pair_style mlff: one interface, two file formats.

   A runner evaluates the contract of mlff/calculators/lammps/deploy.py,

     node_energy (K, N) float64, edge_grad (K, E, 3) = run(species, edge_index, edge_vectors, nlocal)

   and holds the model's metadata. Two implementations:

     model.pt   TorchScript (torch::jit::load; deprecated in PyTorch, kept while libtorch
                ships it), chunking inside the module (its max_atoms_per_chunk attribute)
     model.pt2  an AOTInductor package (torch::inductor::AOTIModelPackageLoader), compiled
                ahead of time for one device (CPU or CUDA); chunking done here, on the same
                receptive-field subgraphs as the TorchScript module

   The format is chosen by the file name's extension (.pt2: AOTInductor). */

#ifndef MLFF_MODEL_RUNNER_H
#define MLFF_MODEL_RUNNER_H

#include <torch/script.h>
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace mlff {

struct ModelInfo {
  int64_t format_version = 0;
  std::vector<std::string> symbols;
  std::vector<double> masses;    // amu
  double cutoff = 0.0;           // Å
  int layers = 1;                // message-passing layers
  double interaction_range = 0.0;
  std::string dtype;             // "float32" or "float64"
  int committee_size = 1;
  double memory_per_edge = 0.0;    // bytes of one evaluation per edge (0: unknown)
};

class ModelRunner {
 public:
  virtual ~ModelRunner() = default;
  // "TorchScript" or "AOTInductor (cpu)" & co., for the log
  virtual std::string description() const = 0;
  const ModelInfo &info() const { return model_info; }
  torch::ScalarType dtype() const
  {
    return model_info.dtype == "float32" ? torch::kFloat32 : torch::kFloat64;
  }
  // species (N,) int64, edge_index (2, E) int64, edge_vectors (E, 3) in dtype(), all on
  // the CPU -> (K, N) energies and (K, E, 3) gradients, float64, contiguous, on the CPU
  virtual std::pair<torch::Tensor, torch::Tensor> run(const torch::Tensor &species,
                                                      const torch::Tensor &edge_index,
                                                      const torch::Tensor &edge_vectors,
                                                      int64_t num_local) = 0;
  // local nodes per chunk (0: whole)
  virtual void set_chunk(int64_t atoms) = 0;
  // the TorchScript module, whose `stage` method the feature exchange between MPI ranks
  // runs: the model itself, or for an AOTInductor package the TorchScript model that
  // `mlff deploy` wrote beside it (loaded on first call; throws std::runtime_error if it
  // is missing); nullptr without stages (the plugin keeps the receptive-field halo)
  virtual torch::jit::Module *script_module() { return nullptr; }

 protected:
  ModelInfo model_info;
};

// Loads a model written by `mlff deploy`; throws std::runtime_error with a message for
// the user (not readable, not a deployed model, wrong format version).
std::unique_ptr<ModelRunner> load_model_runner(const std::string &path);

}    // namespace mlff

#endif
