/* pair_style mlff: machine-learned force fields deployed by `mlff deploy` (AOTInductor
   package model.pt2, or TorchScript model.pt).

   pair_style mlff [threads N] [chunk ATOMS] [parallel auto|exchange|halo]
   pair_coeff * * model.pt Cu O ...        (one element per LAMMPS atom type)

   Units: metal (eV, Å). Needs newton pair on and atom IDs. See docs/lammps.md. */

#ifndef MLFF_PAIR_MLFF_H
#define MLFF_PAIR_MLFF_H

#include "pair.h"

#include "model_runner.h"

#include <ATen/Parallel.h>
#include <torch/script.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace LAMMPS_NS {

class PairMLFF : public Pair {
 public:
  PairMLFF(class LAMMPS *);
  ~PairMLFF() override;

  void compute(int eflag, int vflag) override;
  void settings(int narg, char **arg) override;
  void coeff(int narg, char **arg) override;
  void init_style() override;
  double init_one(int i, int j) override;

  // committee models: per-member forces are summed over ghost copies like the forces
  int pack_reverse_comm(int n, int first, double *buf) override;
  void unpack_reverse_comm(int n, int *list, double *buf) override;
  // "uncertainty": per-atom committee force disagreement, eV/Å (fix pair ... uncertainty 0)
  void *extract_peratom(const char *name, int &ncol) override;
  void *extract(const char *name, int &dim) override;
  double memory_usage() override;
  // layer-wise evaluation: node features to ghost copies (pair_mlff_exchange.cpp)
  int pack_forward_comm(int n, int *list, double *buf, int pbc_flag, int *pbc) override;
  void unpack_forward_comm(int n, int first, double *buf) override;

 protected:
  void allocate();
  void load_model(const std::string &path);
  void build_graph();
  void evaluate_whole(torch::Tensor &energies, torch::Tensor &grads);
  void accumulate(const torch::Tensor &energies, const torch::Tensor &grads, int nlocal);
  void mark_complete_atoms();
  void grow_committee_arrays();
  void plan_chunks(int nlocal, int64_t num_edges);
  static double available_memory();
  // layer-wise evaluation with feature exchange (pair_mlff_exchange.cpp)
  void read_stages();
  bool choose_exchange();
  void evaluate_exchange(torch::Tensor &energies, torch::Tensor &grads);
  int pack_feature_gradients(int n, int first, double *buf);
  void unpack_feature_gradients(int n, int *list, double *buf);

  // settings
  int num_threads;
  int64_t chunk_atoms;       // atoms per chunk; 0: never chunk; -1: when memory needs it
  int64_t chunk_in_use;      // the model's max_atoms_per_chunk now
  double memory_per_edge;    // bytes of one evaluation per edge (measured by mlff deploy)

  // the deployed model and its metadata (see deploy.py and model_runner.h)
  std::unique_ptr<mlff::ModelRunner> runner;
  bool model_loaded;
  std::string model_path;
  std::vector<std::string> model_symbols;
  std::vector<double> model_masses;
  double model_cutoff, model_cutoff_sq;
  int model_layers;
  double interaction_range;
  torch::ScalarType model_dtype;
  int committee_size;

  // LAMMPS type (1..ntypes) -> index into the model's species
  std::vector<int64_t> type_species;
  std::vector<std::string> type_symbols;

  // per-step graph: one node per atom ID (local atoms first), see build_graph()
  std::vector<int> node_of;                     // LAMMPS atom index -> node
  std::unordered_map<tagint, int> node_of_tag;  // atom ID -> node
  std::vector<int> representative;              // node -> the LAMMPS atom whose list it uses
  std::vector<char> atom_complete;              // atom's neighbour list is complete (ranks > 1)
  std::vector<char> node_complete;              // node's representative list is complete
  std::vector<int64_t> node_species;
  std::vector<int> edge_i, edge_j;              // LAMMPS atom indices of each edge
  std::vector<int64_t> edge_index;              // senders (E) then receivers (E), node indices
  std::vector<int64_t> receivers;
  std::vector<double> edge_vec;                 // (E, 3) x_j - x_i
  int num_nodes;

  // layer-wise evaluation: ghosts to one cutoff + skin, features exchanged between stages
  enum { PARALLEL_AUTO, PARALLEL_EXCHANGE, PARALLEL_HALO };
  int parallel_mode;         // the pair_style keyword
  bool memory_low;           // `memory low`: stages recomputed in the backward pass
  bool exchange_active;      // chosen in init_style
  int model_stages;          // 0: the model has no stages (only the halo works)
  int model_center;          // the edge_index row of each edge's central atom
  int model_feature_width;   // widest features exchanged, numbers per atom
  torch::Tensor exchange_buffer;    // (atoms, width) float64, rows: LAMMPS atom indices
  bool reverse_features;     // reverse comm carries feature gradients, not member forces

  // committee: per-member forces of local + ghost atoms, and their disagreement
  int nmax_committee;
  double **member_forces;    // [atom][3 * member]
  double *uncertainty;       // [atom], eV/Å
};

}    // namespace LAMMPS_NS

#endif
