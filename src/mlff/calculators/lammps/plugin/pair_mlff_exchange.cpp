/* pair_style mlff: layer-wise evaluation with node features exchanged between MPI ranks.

   A message-passing model of L layers feels atoms L cutoffs away. Instead of ghost atoms
   out to L x (cutoff + skin) (the halo, pair_mlff.cpp), each rank keeps ghosts to one
   cutoff + skin and runs the model one layer (stage) at a time, as deployed by
   `mlff deploy` (deploy.py: LammpsModel.stage; layerwise.py: the splits):

     features', node_energy = model.stage(member, s, features, species, edges, vectors, nlocal)

   Graph: one node per LAMMPS atom, local and ghost (node = atom index); for every local
   atom i and neighbour j within the cutoff one edge, with i as its central atom (the
   edge_index row `center_index` of the model): (j -> i) or (i -> j), vector x_receiver -
   x_sender. Each directed edge of the periodic graph is then on exactly one rank.

   Forward: stage 0 gives features exact on the local atoms; before stage s > 0 the
   owners' features are copied to every ghost copy (comm->forward_comm). Energy: the sum
   over stages of the local atoms' node energies.

   Backward, from the last stage down: the gradient of (local energies of stage s +
   features_out(s) . G(s)) with respect to the stage's edge vectors adds to the edge
   gradients; its gradient with respect to the stage's input features, on ghosts too,
   goes back to the owners (comm->reverse_comm adds ghost rows to their owners' rows) and
   is G(s-1) on the local atoms. Every edge gradient is then dE_total/dr_ij, as in one
   process: forces, the virial and its per-atom split are those of the serial run.
   Committee members run one after the other, each with its own exchanges. */

#include "pair_mlff.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"
#include "utils.h"

#include <torch/csrc/autograd/autograd.h>

#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

using namespace LAMMPS_NS;

namespace {

std::string first_message_line(const std::exception &exc)
{
  std::string text = exc.what();
  auto end = text.find('\n');
  return end == std::string::npos ? text : text.substr(0, end);
}

}    // namespace

/* ----------------------------------------------------------------------
   the model's stages (attributes of deploy.py's LammpsModel; absent in older files)
------------------------------------------------------------------------- */

void PairMLFF::read_stages()
{
  model_stages = 0;
  model_center = 1;
  model_feature_width = 0;
  // a package's stages live in a second file: loaded only where the exchange may run
  const bool may_exchange =
      comm->nprocs > 1 || parallel_mode == PARALLEL_EXCHANGE || memory_low;
  if (!may_exchange || parallel_mode == PARALLEL_HALO) {
    comm_forward = 0;
    return;
  }
  torch::jit::Module *module = nullptr;
  try {
    module = runner->script_module();
  } catch (const std::exception &exc) {
    error->all(FLERR, "pair_coeff: {}", exc.what());
  }
  if (module && module->hasattr("num_stages") && module->find_method("stage")) {
    model_stages = static_cast<int>(module->attr("num_stages").toInt());
    model_center = static_cast<int>(module->attr("center_index").toInt());
    model_feature_width = static_cast<int>(module->attr("feature_width").toInt());
  }
  comm_forward = model_feature_width;
  if (model_feature_width > comm_reverse) comm_reverse = model_feature_width;
}

/* ----------------------------------------------------------------------
   exchange or halo (init_style): `parallel exchange` forces the exchange (also on one
   rank), `parallel halo` the halo; auto takes the exchange on several ranks when the
   model has stages and no fixed chunk size was asked for
------------------------------------------------------------------------- */

bool PairMLFF::choose_exchange()
{
  if (parallel_mode == PARALLEL_HALO) return false;
  if (parallel_mode == PARALLEL_EXCHANGE) {
    if (model_stages < 1)
      error->all(FLERR,
                 "pair_style mlff parallel exchange: {} has no layer-wise stages (a strictly "
                 "local model, an architecture without a split, or a file from an older mlff: "
                 "deploy it again). Use 'parallel auto' or 'parallel halo'",
                 model_path);
    if (chunk_atoms > 0)
      error->all(FLERR, "pair_style mlff: 'chunk' works with 'parallel halo' only");
  }
  if (memory_low && model_stages < 2 && comm->me == 0)
    error->warning(FLERR,
                   "pair_style mlff memory low: {} is evaluated in one piece (no layer-wise "
                   "stages, or parallel halo), so 'memory low' saves nothing here",
                   model_path);
  const bool chosen = parallel_mode == PARALLEL_EXCHANGE ||
      (model_stages > 1 && chunk_atoms <= 0 && (comm->nprocs > 1 || memory_low));
  if (chosen && comm->me == 0)
    utils::logmesg(lmp,
                   "pair_style mlff: layer-wise evaluation, ghosts to one cutoff + skin, node "
                   "features ({} per atom) exchanged between the {} layers\n",
                   model_feature_width, model_stages);
  return chosen;
}

/* ----------------------------------------------------------------------
   energies (K, nlocal) float64 and edge gradients (K, E, 3) float64 of this step
------------------------------------------------------------------------- */

void PairMLFF::evaluate_exchange(torch::Tensor &energies, torch::Tensor &grads)
{
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  const int *type = atom->type;
  double **x = atom->x;

  // edges: each local atom's neighbours within the cutoff, the local atom central
  edge_i.clear();
  edge_j.clear();
  edge_vec.clear();
  edge_index.clear();
  receivers.clear();
  for (int i = 0; i < nlocal; i++) {
    const int *neighbors = list->firstneigh[i];
    const int count = list->numneigh[i];
    for (int jj = 0; jj < count; jj++) {
      const int j = neighbors[jj] & NEIGHMASK;
      const double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
      if (dx * dx + dy * dy + dz * dz >= model_cutoff_sq) continue;
      const int sender = model_center == 1 ? j : i;
      const int receiver = model_center == 1 ? i : j;
      const double sign = model_center == 1 ? -1.0 : 1.0;
      edge_i.push_back(sender);
      edge_j.push_back(receiver);
      edge_index.push_back(sender);
      receivers.push_back(receiver);
      edge_vec.push_back(sign * dx);
      edge_vec.push_back(sign * dy);
      edge_vec.push_back(sign * dz);
    }
  }
  edge_index.insert(edge_index.end(), receivers.begin(), receivers.end());
  node_species.resize(nall);
  for (int i = 0; i < nall; i++) node_species[i] = type_species[type[i]];

  const int64_t num_edges = static_cast<int64_t>(edge_i.size());
  const auto int64 = torch::TensorOptions().dtype(torch::kInt64);
  static int64_t empty_index[2] = {0, 0};
  static double empty_vector[3] = {0.0, 0.0, 0.0};
  torch::Tensor species =
      torch::from_blob(nall ? node_species.data() : empty_index, {static_cast<int64_t>(nall)},
                       int64);
  torch::Tensor edges =
      torch::from_blob(num_edges ? edge_index.data() : empty_index, {2, num_edges}, int64);
  torch::Tensor vectors = torch::from_blob(num_edges ? edge_vec.data() : empty_vector,
                                           {num_edges, 3}, torch::kFloat64)
                              .to(model_dtype);
  const int64_t local = nlocal;
  const auto real = torch::TensorOptions().dtype(model_dtype);
  energies = torch::zeros({committee_size, local}, torch::kFloat64);
  grads = torch::zeros({committee_size, num_edges, 3}, torch::kFloat64);
  torch::jit::Method stage = runner->script_module()->get_method("stage");

  try {
    for (int k = 0; k < committee_size; k++) {
      torch::Tensor edge_vectors = vectors.detach().requires_grad_(true);
      // stage s of member k on features `in`: (features out, node energies)
      auto run_stage = [&](int s, const torch::Tensor &in) {
        auto result = stage({static_cast<int64_t>(k), static_cast<int64_t>(s), in, species,
                             edges, edge_vectors, local})
                          .toTuple();
        return std::make_pair(result->elements()[0].toTensor(),
                              result->elements()[1].toTensor());
      };
      std::vector<torch::Tensor> inputs, outputs, node_energies;
      torch::Tensor features = torch::zeros({static_cast<int64_t>(nall), 0}, real);
      for (int s = 0; s < model_stages; s++) {
        torch::Tensor out, energy;
        {
          // memory low: no graph now; each stage runs again, with its graph, in the
          // backward pass below, so only one stage's graph is held at a time
          std::optional<torch::NoGradGuard> no_graph;
          if (memory_low)
            no_graph.emplace();
          else if (s > 0)
            features.requires_grad_(true);
          std::tie(out, energy) = run_stage(s, features);
        }
        inputs.push_back(features);
        outputs.push_back(out);
        node_energies.push_back(energy);
        energies[k] += energy.detach().narrow(0, 0, local).to(torch::kFloat64);
        if (s + 1 < model_stages) {
          // the owners' features to their ghost copies
          exchange_buffer = out.detach().to(torch::kFloat64).contiguous();
          if (exchange_buffer.size(0) != nall)
            error->one(FLERR, "pair_style mlff: stage {} returned {} rows for {} atoms", s,
                       exchange_buffer.size(0), nall);
          comm->forward_comm(this, static_cast<int>(exchange_buffer.size(1)));
          features = exchange_buffer.to(model_dtype);
        }
      }
      torch::Tensor upstream;    // d E_total / d features_out(s), local rows valid
      for (int s = model_stages - 1; s >= 0; s--) {
        if (memory_low) {
          if (s > 0) inputs[s].requires_grad_(true);
          std::tie(outputs[s], node_energies[s]) = run_stage(s, inputs[s]);
        }
        torch::Tensor objective = node_energies[s].narrow(0, 0, local).sum();
        if (upstream.defined())
          objective = objective +
              (outputs[s].narrow(0, 0, local) * upstream.narrow(0, 0, local)).sum();
        std::vector<torch::Tensor> wrt{edge_vectors};
        if (s > 0) wrt.push_back(inputs[s]);
        std::vector<torch::Tensor> found(wrt.size());
        if (objective.requires_grad())
          found = torch::autograd::grad({objective}, wrt, {}, false, false, true);
        if (found[0].defined()) grads[k] += found[0].to(torch::kFloat64);
        if (s > 0) {
          // gradients w.r.t. ghost features to their owners (every rank takes part)
          exchange_buffer = found[1].defined()
              ? found[1].detach().to(torch::kFloat64).contiguous()
              : torch::zeros({static_cast<int64_t>(nall), inputs[s].size(1)}, torch::kFloat64);
          reverse_features = true;
          comm->reverse_comm(this, static_cast<int>(exchange_buffer.size(1)));
          reverse_features = false;
          upstream = exchange_buffer.to(model_dtype);
        }
        outputs[s] = torch::Tensor();
        node_energies[s] = torch::Tensor();
      }
    }
  } catch (const std::exception &exc) {
    error->one(FLERR, "pair_style mlff: the model failed at step {} (layer-wise): {}",
               update->ntimestep, first_message_line(exc));
  }
  grads = grads.contiguous();
  exchange_buffer = torch::Tensor();
}

/* ---------------------------------------------------------------------- */

int PairMLFF::pack_forward_comm(int n, int *list_, double *buf, int /*pbc_flag*/, int * /*pbc*/)
{
  const int64_t width = exchange_buffer.size(1);
  const double *rows = exchange_buffer.data_ptr<double>();
  int m = 0;
  for (int i = 0; i < n; i++) {
    const double *row = rows + static_cast<int64_t>(list_[i]) * width;
    for (int64_t c = 0; c < width; c++) buf[m++] = row[c];
  }
  return m;
}

void PairMLFF::unpack_forward_comm(int n, int first, double *buf)
{
  const int64_t width = exchange_buffer.size(1);
  double *rows = exchange_buffer.data_ptr<double>();
  int m = 0;
  for (int i = first; i < first + n; i++) {
    double *row = rows + static_cast<int64_t>(i) * width;
    for (int64_t c = 0; c < width; c++) row[c] = buf[m++];
  }
}

int PairMLFF::pack_feature_gradients(int n, int first, double *buf)
{
  const int64_t width = exchange_buffer.size(1);
  const double *rows = exchange_buffer.data_ptr<double>();
  int m = 0;
  for (int i = first; i < first + n; i++) {
    const double *row = rows + static_cast<int64_t>(i) * width;
    for (int64_t c = 0; c < width; c++) buf[m++] = row[c];
  }
  return m;
}

void PairMLFF::unpack_feature_gradients(int n, int *list_, double *buf)
{
  const int64_t width = exchange_buffer.size(1);
  double *rows = exchange_buffer.data_ptr<double>();
  int m = 0;
  for (int i = 0; i < n; i++) {
    double *row = rows + static_cast<int64_t>(list_[i]) * width;
    for (int64_t c = 0; c < width; c++) row[c] += buf[m++];
  }
}
