/* pair_style mlff: runs a model deployed by `mlff deploy` (TorchScript) inside LAMMPS.

   Every step the pair style builds a graph from LAMMPS's full neighbour list and calls
   the model (the contract is documented in mlff/calculators/lammps/deploy.py):

     node_energy (K, N), edge_grad (K, E, 3) = model(species, edge_index, edge_vectors, nlocal)

   Nodes: one per atom ID present on this rank, the local atoms first. All copies of an
   atom (a local atom and its periodic images among the ghosts, or the several ghost
   copies of another rank's atom) are one node, so the graph is the periodic graph of the
   ASE calculator: an edge to an image carries the image's position in its vector,
   r_ij = x_j - x_i. One rank needs no ghost neighbour lists and ghosts out to the cutoff
   only: every node is a local atom, with the edges of its full neighbour list.

   Several ranks: ghost atoms reach layers x (cutoff + skin), and LAMMPS builds neighbour
   lists of ghosts (REQ_GHOST). A ghost copy's list is complete when all atoms within the
   neighbour cutoff of it are present, i.e. when it lies at least that cutoff inside the
   ghost region (decided when the lists are built). A node takes its edges from a
   complete copy's list (its representative): the local atom, or a complete ghost copy.
   A node with no complete copy (at the edge of the ghost region) gets the edges from and
   to its complete neighbours only, taken from their lists, so every edge is counted once.
   Every node within layers - 1 hops of a local atom is complete, hence every message
   that reaches a local atom's energy is exact.

   Energy: the sum of the local nodes' energies. Forces: dE/dr_ij of every edge goes to
   both its atoms (f_i += g, f_j -= g), ghosts included; LAMMPS adds the ghosts' forces to
   their owners (newton on, reverse communication). Virial: W = -sum r_ij (x) g, split
   half and half between the two atoms for the per-atom virial.

   `parallel exchange` (the default on several ranks for models deployed with per-layer
   stages) keeps ghosts to one cutoff + skin instead and exchanges node features between
   layers: pair_mlff_exchange.cpp. The halo above is `parallel halo`, and the fallback.

   Large systems: with `chunk N`, or when the step's edges times the model's memory per
   edge exceed 85% of the available memory, the model evaluates ranges of N local nodes
   on their receptive-field subgraphs (deploy.py, LammpsModel.forward); same results. */

#include "pair_mlff.h"

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "platform.h"
#include "update.h"
#include "utils.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <sstream>
#include <tuple>
#include <utility>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

using namespace LAMMPS_NS;

namespace {

// the first line of an exception message (TorchScript errors carry long backtraces)
std::string first_line(const std::exception &exc)
{
  std::string text = exc.what();
  auto end = text.find('\n');
  return end == std::string::npos ? text : text.substr(0, end);
}

constexpr int CENTROID_NOT_AVAILABLE = 2;    // LAMMPS's CENTROID_NOTAVAIL

// glibc serves blocks above its mmap threshold with fresh pages and unmaps them when
// freed, so every large intermediate tensor of a step pays a page fault per 4 KiB on
// first touch (about 40% of a MACE step for 2048 atoms). Serve all blocks from the heap
// and keep freed memory for reuse, as the ASE calculator does (mlff.runtime); the
// process keeps its peak memory. MLFF_KEEP_FREED_MEMORY=0 leaves glibc's default.
bool keep_freed_memory()
{
#if defined(__GLIBC__)
  const char *setting = std::getenv("MLFF_KEEP_FREED_MEMORY");
  if (setting && std::strcmp(setting, "0") == 0) return false;
  return mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, -1) == 1;
#else
  return false;
#endif
}

}    // namespace

/* ---------------------------------------------------------------------- */

PairMLFF::PairMLFF(LAMMPS *lmp) :
    Pair(lmp), num_threads(1), chunk_atoms(-1), chunk_in_use(0), memory_per_edge(0.0),
    model_loaded(false), model_cutoff(0.0), model_cutoff_sq(0.0),
    model_layers(1), interaction_range(0.0), model_dtype(torch::kFloat64), committee_size(1),
    num_nodes(0), parallel_mode(PARALLEL_AUTO), memory_low(false), exchange_active(false), model_stages(0),
    model_center(1), model_feature_width(0), reverse_features(false), nmax_committee(0),
    member_forces(nullptr), uncertainty(nullptr)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  no_virial_fdotr_compute = 1;    // the virial comes from the edge forces
  centroidstressflag = CENTROID_NOT_AVAILABLE;
  comm_reverse = 0;
}

PairMLFF::~PairMLFF()
{
  if (copymode) return;
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
    memory->destroy(cutghost);
  }
  memory->destroy(member_forces);
  memory->destroy(uncertainty);
}

/* ---------------------------------------------------------------------- */

void PairMLFF::allocate()
{
  allocated = 1;
  const int n = atom->ntypes + 1;
  memory->create(setflag, n, n, "pair:setflag");
  memory->create(cutsq, n, n, "pair:cutsq");
  memory->create(cutghost, n, n, "pair:cutghost");
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) setflag[i][j] = 0;
}

/* ----------------------------------------------------------------------
   pair_style mlff [threads N] [chunk ATOMS]
------------------------------------------------------------------------- */

void PairMLFF::settings(int narg, char **arg)
{
  int iarg = 0;
  while (iarg < narg) {
    if (strcmp(arg[iarg], "threads") == 0) {
      if (iarg + 1 >= narg)
        error->all(FLERR, "pair_style mlff: 'threads' needs a number (torch threads per MPI "
                          "rank), e.g. 'pair_style mlff threads 1'");
      num_threads = utils::inumeric(FLERR, arg[iarg + 1], false, lmp);
      if (num_threads < 1)
        error->all(FLERR, "pair_style mlff: threads must be at least 1, got {}", num_threads);
      iarg += 2;
    } else if (strcmp(arg[iarg], "chunk") == 0) {
      if (iarg + 1 >= narg)
        error->all(FLERR, "pair_style mlff: 'chunk' needs a number of atoms per chunk (0: "
                          "never chunk), e.g. 'pair_style mlff chunk 4000'");
      chunk_atoms = utils::inumeric(FLERR, arg[iarg + 1], false, lmp);
      if (chunk_atoms < 0)
        error->all(FLERR, "pair_style mlff: chunk must be 0 (never) or positive, got {}",
                   chunk_atoms);
      iarg += 2;
    } else if (strcmp(arg[iarg], "parallel") == 0) {
      const char *mode = iarg + 1 < narg ? arg[iarg + 1] : "";
      if (strcmp(mode, "auto") == 0)
        parallel_mode = PARALLEL_AUTO;
      else if (strcmp(mode, "exchange") == 0)
        parallel_mode = PARALLEL_EXCHANGE;
      else if (strcmp(mode, "halo") == 0)
        parallel_mode = PARALLEL_HALO;
      else
        error->all(FLERR,
                   "pair_style mlff: 'parallel' needs auto, exchange (ghosts to one cutoff, node "
                   "features exchanged between layers) or halo (ghosts to the whole receptive "
                   "field), got '{}'",
                   mode);
      iarg += 2;
    } else if (strcmp(arg[iarg], "memory") == 0) {
      const char *level = iarg + 1 < narg ? arg[iarg + 1] : "";
      if (strcmp(level, "low") == 0)
        memory_low = true;
      else if (strcmp(level, "normal") == 0)
        memory_low = false;
      else
        error->all(FLERR,
                   "pair_style mlff: 'memory' needs normal (keep every layer's intermediate "
                   "results for the forces) or low (keep one layer's at a time and compute "
                   "each layer twice), got '{}'",
                   level);
      iarg += 2;
    } else {
      error->all(FLERR,
                 "pair_style mlff: unknown keyword '{}'. Usage: pair_style mlff [threads N] "
                 "[chunk ATOMS] [parallel auto|exchange|halo] [memory normal|low]; "
                 "the model and elements go to pair_coeff * * model.pt El1 El2 ...",
                 arg[iarg]);
    }
  }
}

/* ----------------------------------------------------------------------
   pair_coeff * * model.pt El1 El2 ...   (one element per atom type)
------------------------------------------------------------------------- */

void PairMLFF::coeff(int narg, char **arg)
{
  const int ntypes = atom->ntypes;
  if (narg < 3 || strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR,
               "pair_coeff for pair_style mlff must be 'pair_coeff * * MODEL.pt EL1 EL2 ...' "
               "with one element per atom type ({} types here)",
               ntypes);
  if (!allocated) allocate();
  load_model(arg[2]);

  const int nelements = narg - 3;
  const std::string known = utils::join_words(model_symbols, " ");
  if (nelements != ntypes)
    error->all(FLERR,
               "pair_coeff * * {}: {} element(s) given for {} atom types; list one element "
               "per atom type, in type order (the model knows: {})",
               model_path, nelements, ntypes, known);

  type_species.assign(ntypes + 1, -1);
  type_symbols.assign(ntypes + 1, "");
  for (int t = 1; t <= ntypes; t++) {
    const std::string symbol = arg[2 + t];
    int index = -1;
    for (size_t s = 0; s < model_symbols.size(); s++)
      if (model_symbols[s] == symbol) index = static_cast<int>(s);
    if (index < 0)
      error->all(FLERR,
                 "pair_coeff * * {}: element '{}' (atom type {}) is not in the model, which "
                 "knows: {}. Map every atom type to one of these elements, in type order",
                 model_path, symbol, t, known);
    type_species[t] = index;
    type_symbols[t] = symbol;
  }
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) setflag[i][j] = 1;
}

/* ---------------------------------------------------------------------- */

void PairMLFF::load_model(const std::string &path)
{
  if (!platform::file_is_readable(path))
    error->one(FLERR,
               "pair_coeff: cannot read model file '{}' (missing or unreadable). Write it with "
               "`mlff deploy MODEL.mlff --out DIR` and give DIR/model.pt",
               path);
  const bool kept = keep_freed_memory();
  try {
    runner = mlff::load_model_runner(path);
  } catch (const std::exception &exc) {
    error->one(FLERR, "pair_coeff: {}", exc.what());
  }
  model_path = path;
  const mlff::ModelInfo &info = runner->info();
  model_symbols = info.symbols;
  model_masses = info.masses;
  model_cutoff = info.cutoff;
  model_cutoff_sq = model_cutoff * model_cutoff;
  model_layers = info.layers;
  interaction_range = info.interaction_range;
  committee_size = info.committee_size;
  const std::string dtype = info.dtype;
  if (dtype == "float64")
    model_dtype = torch::kFloat64;
  else if (dtype == "float32")
    model_dtype = torch::kFloat32;
  else
    error->one(FLERR, "pair_coeff: '{}' has an unknown dtype '{}'", path, dtype);
  memory_per_edge = info.memory_per_edge;
  chunk_in_use = 0;

  // committee: per-member forces travel with the reverse communication
  comm_reverse = committee_size > 1 ? 3 * committee_size : 0;
  read_stages();
  model_loaded = true;

  if (comm->me == 0)
    utils::logmesg(lmp,
                   "pair_style mlff: {} ({}; species {}; cutoff {} Å; {} message-passing "
                   "layer(s), interaction range {} Å; {}{}){}\n",
                   path, runner->description(), utils::join_words(model_symbols, " "), model_cutoff, model_layers,
                   interaction_range, dtype,
                   committee_size > 1 ? fmt::format("; committee of {}", committee_size) : "",
                   kept ? "; freed memory kept for reuse (MLFF_KEEP_FREED_MEMORY=0: off)" : "");
}

/* ---------------------------------------------------------------------- */

void PairMLFF::init_style()
{
  if (!model_loaded)
    error->all(FLERR, "pair_style mlff: no model; give one with 'pair_coeff * * model.pt EL...'");
  if (force->newton_pair == 0)
    error->all(FLERR,
               "pair_style mlff requires newton pair on (the default): forces on ghost atoms "
               "are sent back to their owners. Remove 'newton off' from the input");
  if (atom->tag_enable == 0)
    error->all(FLERR, "pair_style mlff requires atom IDs (atom_modify id yes, the default)");
  if (strcmp(update->unit_style, "metal") != 0)
    error->all(FLERR,
               "pair_style mlff requires 'units metal' (eV, Å, ps), the units of mlff models; "
               "this input uses 'units {}'",
               update->unit_style);

  at::set_num_threads(num_threads);

  int flags = NeighConst::REQ_FULL;
  ghostneigh = 0;
  read_stages();    // again: 'pair_style' may have changed the parallel mode since pair_coeff
  exchange_active = choose_exchange();
  if (comm->nprocs > 1 && !exchange_active) {
    // other ranks' atoms must reach every local atom's receptive field: layers hops of
    // at most cutoff + skin each between two neighbour-list builds
    flags |= NeighConst::REQ_GHOST;
    ghostneigh = 1;
    const double needed = model_layers * (model_cutoff + neighbor->skin);
    if (comm->cutghostuser < needed) comm->cutghostuser = needed;
  }
  neighbor->add_request(this, flags);

  // a type whose mass is far from its element's is likely mapped to the wrong element
  if (atom->mass && atom->mass_setflag) {
    for (int t = 1; t <= atom->ntypes; t++) {
      if (!atom->mass_setflag[t]) continue;
      const double expected = model_masses[type_species[t]];
      if (std::fabs(atom->mass[t] - expected) > 0.1 * expected && comm->me == 0)
        error->warning(FLERR,
                       "pair_style mlff: atom type {} has mass {} but pair_coeff maps it to {} "
                       "(mass {}); check the element order in pair_coeff",
                       t, atom->mass[t], type_symbols[t], expected);
    }
  }
}

double PairMLFF::init_one(int i, int j)
{
  cutghost[i][j] = cutghost[j][i] = model_cutoff;
  return model_cutoff;
}

/* ----------------------------------------------------------------------
   which atoms have complete neighbour lists (several ranks; when lists are built):
   local atoms, and ghosts at least the neighbour cutoff inside the ghost region
------------------------------------------------------------------------- */

void PairMLFF::mark_complete_atoms()
{
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  double **x = atom->x;
  atom_complete.assign(nall, 1);
  const double cutneigh = neighbor->cutneighmax;
  double lo[3], hi[3], margin[3];
  if (domain->triclinic) {
    // in lamda coordinates: a sphere of radius r spans r * |row d of h_inv| along d, as
    // Comm converts its ghost cutoff
    const double *h_inv = domain->h_inv;
    const double length[3] = {
        std::sqrt(h_inv[0] * h_inv[0] + h_inv[5] * h_inv[5] + h_inv[4] * h_inv[4]),
        std::sqrt(h_inv[1] * h_inv[1] + h_inv[3] * h_inv[3]), h_inv[2]};
    for (int d = 0; d < 3; d++) {
      lo[d] = domain->sublo_lamda[d];
      hi[d] = domain->subhi_lamda[d];
      margin[d] = comm->cutghost[d] - cutneigh * length[d];
    }
  } else {
    for (int d = 0; d < 3; d++) {
      lo[d] = domain->sublo[d];
      hi[d] = domain->subhi[d];
      margin[d] = comm->cutghost[d] - cutneigh;
    }
  }
  for (int i = nlocal; i < nall; i++) {
    double p[3] = {x[i][0], x[i][1], x[i][2]};
    if (domain->triclinic) domain->x2lamda(x[i], p);
    for (int d = 0; d < 3; d++)
      if (p[d] < lo[d] - margin[d] || p[d] > hi[d] + margin[d]) atom_complete[i] = 0;
  }
}

/* ----------------------------------------------------------------------
   nodes, species and edges (within the model's cutoff) of this step
------------------------------------------------------------------------- */

void PairMLFF::build_graph()
{
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  const tagint *tag = atom->tag;
  const int *type = atom->type;
  double **x = atom->x;
  const bool ghost_lists = list->ghost != 0;

  if (ghost_lists && (neighbor->ago == 0 || static_cast<int>(atom_complete.size()) != nall))
    mark_complete_atoms();

  // one node per atom ID: the local atoms first (node i = atom i), then the other ranks'
  // atoms, each represented by a ghost copy with a complete neighbour list if it has one
  node_of.resize(nall);
  node_of_tag.clear();
  node_of_tag.reserve(nall);
  representative.clear();
  for (int i = 0; i < nlocal; i++) {
    node_of_tag.emplace(tag[i], i);
    node_of[i] = i;
    representative.push_back(i);
  }
  for (int i = nlocal; i < nall; i++) {
    auto inserted = node_of_tag.emplace(tag[i], static_cast<int>(representative.size()));
    const int node = inserted.first->second;
    node_of[i] = node;
    if (inserted.second)
      representative.push_back(i);
    else if (ghost_lists && node >= nlocal && !atom_complete[representative[node]] &&
             atom_complete[i])
      representative[node] = i;
  }
  num_nodes = static_cast<int>(representative.size());
  node_species.resize(num_nodes);
  node_complete.resize(num_nodes);
  for (int node = 0; node < num_nodes; node++) {
    node_species[node] = type_species[type[representative[node]]];
    node_complete[node] = node < nlocal || (ghost_lists && atom_complete[representative[node]]);
  }

  // edges: each complete node's neighbours within the cutoff, from its representative's
  // full list, and the reverse edges of incomplete neighbours
  edge_i.clear();
  edge_j.clear();
  edge_vec.clear();
  edge_index.clear();
  receivers.clear();
  auto add_edge = [&](int i, int j, double dx, double dy, double dz) {
    edge_i.push_back(i);
    edge_j.push_back(j);
    edge_index.push_back(node_of[i]);
    receivers.push_back(node_of[j]);
    edge_vec.push_back(dx);
    edge_vec.push_back(dy);
    edge_vec.push_back(dz);
  };
  // each node's edges in the order of their receiving node: the model's gathers and
  // scatters then walk memory in order (about 10% faster than LAMMPS's bin order)
  std::vector<std::pair<int, int>> within;    // (receiving node, LAMMPS atom j)
  const int num_sources = ghost_lists ? num_nodes : nlocal;
  for (int node = 0; node < num_sources; node++) {
    if (!node_complete[node]) continue;
    const int i = representative[node];
    const int *neighbors = list->firstneigh[i];
    const int count = list->numneigh[i];
    const double xi = x[i][0], yi = x[i][1], zi = x[i][2];
    within.clear();
    for (int jj = 0; jj < count; jj++) {
      const int j = neighbors[jj] & NEIGHMASK;
      const double dx = x[j][0] - xi, dy = x[j][1] - yi, dz = x[j][2] - zi;
      if (dx * dx + dy * dy + dz * dz < model_cutoff_sq) within.emplace_back(node_of[j], j);
    }
    std::sort(within.begin(), within.end());
    for (const auto &neighbor : within) {
      const int j = neighbor.second;
      const double dx = x[j][0] - xi, dy = x[j][1] - yi, dz = x[j][2] - zi;
      add_edge(i, j, dx, dy, dz);
      if (!node_complete[neighbor.first]) add_edge(j, i, -dx, -dy, -dz);
    }
  }
  edge_index.insert(edge_index.end(), receivers.begin(), receivers.end());
}

/* ---------------------------------------------------------------------- */

void PairMLFF::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  const int nlocal = atom->nlocal;
  torch::Tensor energies, grads;
  if (exchange_active) {
    evaluate_exchange(energies, grads);
  } else {
    evaluate_whole(energies, grads);
  }
  accumulate(energies, grads, nlocal);
}

/* ----------------------------------------------------------------------
   the whole model on this rank's graph (one rank, or ghosts to the receptive field)
------------------------------------------------------------------------- */

void PairMLFF::evaluate_whole(torch::Tensor &energies, torch::Tensor &grads)
{
  build_graph();
  const int nlocal = atom->nlocal;
  const int64_t num_edges = static_cast<int64_t>(edge_i.size());
  const auto int64 = torch::TensorOptions().dtype(torch::kInt64);
  // from_blob needs a valid pointer even for empty tensors
  static int64_t empty_index[2] = {0, 0};
  static double empty_vector[3] = {0.0, 0.0, 0.0};
  torch::Tensor species = torch::from_blob(
      num_nodes ? node_species.data() : empty_index, {static_cast<int64_t>(num_nodes)}, int64);
  torch::Tensor edges =
      torch::from_blob(num_edges ? edge_index.data() : empty_index, {2, num_edges}, int64);
  torch::Tensor vectors = torch::from_blob(num_edges ? edge_vec.data() : empty_vector,
                                           {num_edges, 3}, torch::kFloat64)
                              .to(model_dtype);

  plan_chunks(nlocal, num_edges);

  try {
    std::tie(energies, grads) = runner->run(species, edges, vectors, nlocal);
  } catch (const std::exception &exc) {
    error->one(FLERR, "pair_style mlff: the model failed at step {}: {}", update->ntimestep,
               first_line(exc));
  }
}

/* ----------------------------------------------------------------------
   energies (K, nodes) and edge gradients (K, E, 3) to energy, forces and virial
------------------------------------------------------------------------- */

void PairMLFF::accumulate(const torch::Tensor &energies, const torch::Tensor &grads, int nlocal)
{
  const int64_t num_edges = static_cast<int64_t>(edge_i.size());
  const double *energy = energies.data_ptr<double>();
  const int64_t energy_columns = energies.size(1);
  const double *grad = grads.data_ptr<double>();
  const int members = committee_size;
  const double inv_members = 1.0 / members;

  if (eflag_global || eflag_atom) {
    for (int i = 0; i < nlocal; i++) {
      double e = 0.0;
      for (int k = 0; k < members; k++) e += energy[k * energy_columns + i];
      e *= inv_members;
      if (eflag_global) eng_vdwl += e;
      if (eflag_atom) eatom[i] += e;
    }
  }

  double **f = atom->f;
  for (int64_t e = 0; e < num_edges; e++) {
    double g[3] = {0.0, 0.0, 0.0};
    for (int k = 0; k < members; k++)
      for (int c = 0; c < 3; c++) g[c] += grad[(k * num_edges + e) * 3 + c];
    for (int c = 0; c < 3; c++) g[c] *= inv_members;
    const int i = edge_i[e], j = edge_j[e];
    for (int c = 0; c < 3; c++) {
      f[i][c] += g[c];
      f[j][c] -= g[c];
    }
    if (vflag_either) {
      const double *r = &edge_vec[3 * e];
      const double v[6] = {-r[0] * g[0],
                           -r[1] * g[1],
                           -r[2] * g[2],
                           -0.5 * (r[0] * g[1] + r[1] * g[0]),
                           -0.5 * (r[0] * g[2] + r[2] * g[0]),
                           -0.5 * (r[1] * g[2] + r[2] * g[1])};
      if (vflag_global)
        for (int c = 0; c < 6; c++) virial[c] += v[c];
      if (vflag_atom)
        for (int c = 0; c < 6; c++) {
          vatom[i][c] += 0.5 * v[c];
          vatom[j][c] += 0.5 * v[c];
        }
    }
  }

  if (members > 1) {
    // each member's forces, summed over ghost copies like the forces, then their spread
    grow_committee_arrays();
    const int nall = nlocal + atom->nghost;
    for (int i = 0; i < nall; i++)
      for (int c = 0; c < 3 * members; c++) member_forces[i][c] = 0.0;
    for (int k = 0; k < members; k++)
      for (int64_t e = 0; e < num_edges; e++) {
        const double *g = &grad[(k * num_edges + e) * 3];
        for (int c = 0; c < 3; c++) {
          member_forces[edge_i[e]][3 * k + c] += g[c];
          member_forces[edge_j[e]][3 * k + c] -= g[c];
        }
      }
    comm->reverse_comm(this, 3 * members);
    for (int i = 0; i < nlocal; i++) {
      double mean[3] = {0.0, 0.0, 0.0};
      for (int k = 0; k < members; k++)
        for (int c = 0; c < 3; c++) mean[c] += member_forces[i][3 * k + c] * inv_members;
      double spread = 0.0;
      for (int k = 0; k < members; k++)
        for (int c = 0; c < 3; c++) {
          const double d = member_forces[i][3 * k + c] - mean[c];
          spread += d * d;
        }
      uncertainty[i] = std::sqrt(spread * inv_members);
    }
  }
}

/* ----------------------------------------------------------------------
   atoms per chunk of this step: `chunk N` as given, or (the default) whole unless the
   step's autograd graph (edges x the model's memory per edge) would take more than
   85% of the memory available, as the ASE calculator plans it
------------------------------------------------------------------------- */

void PairMLFF::plan_chunks(int nlocal, int64_t num_edges)
{
  int64_t chunk = chunk_atoms;
  if (chunk < 0) {
    chunk = 0;
    const double needed = memory_per_edge * static_cast<double>(num_edges);
    const double budget = 0.85 * available_memory();
    if (needed > budget && needed > 0.0 && nlocal > 0) {
      // a chunk's subgraph holds its atoms and their halo: aim at half the budget's atoms
      const double per_atom = needed / nlocal;
      chunk = std::max<int64_t>(1, static_cast<int64_t>(0.5 * budget / per_atom));
    }
  }
  if (chunk == chunk_in_use) return;
  runner->set_chunk(chunk);
  if (comm->me == 0 && chunk_atoms < 0)
    utils::logmesg(lmp, "pair_style mlff: evaluating in chunks of {} atoms to fit memory\n",
                   chunk);
  chunk_in_use = chunk;
}

double PairMLFF::available_memory()
{
  // the kernel's MemAvailable, bytes (Linux); unknown: no limit
  FILE *meminfo = fopen("/proc/meminfo", "r");
  if (!meminfo) return 1e300;
  char line[256];
  double kib = -1.0;
  while (fgets(line, sizeof(line), meminfo))
    if (strncmp(line, "MemAvailable:", 13) == 0) {
      kib = atof(line + 13);
      break;
    }
  fclose(meminfo);
  return kib < 0 ? 1e300 : 1024.0 * kib;
}

/* ---------------------------------------------------------------------- */

void PairMLFF::grow_committee_arrays()
{
  if (atom->nmax <= nmax_committee && uncertainty) return;
  nmax_committee = atom->nmax > 0 ? atom->nmax : 1;
  memory->destroy(member_forces);
  memory->destroy(uncertainty);
  memory->create(member_forces, nmax_committee, 3 * committee_size, "pair:member_forces");
  memory->create(uncertainty, nmax_committee, "pair:uncertainty");
  for (int i = 0; i < nmax_committee; i++) uncertainty[i] = 0.0;
}

int PairMLFF::pack_reverse_comm(int n, int first, double *buf)
{
  if (reverse_features) return pack_feature_gradients(n, first, buf);
  int m = 0;
  const int width = 3 * committee_size;
  for (int i = first; i < first + n; i++)
    for (int c = 0; c < width; c++) buf[m++] = member_forces[i][c];
  return m;
}

void PairMLFF::unpack_reverse_comm(int n, int *list_, double *buf)
{
  if (reverse_features) {
    unpack_feature_gradients(n, list_, buf);
    return;
  }
  int m = 0;
  const int width = 3 * committee_size;
  for (int i = 0; i < n; i++)
    for (int c = 0; c < width; c++) member_forces[list_[i]][c] += buf[m++];
}

void *PairMLFF::extract_peratom(const char *name, int &ncol)
{
  if (strcmp(name, "uncertainty") == 0) {
    if (committee_size < 2)
      error->all(FLERR,
                 "pair_style mlff: 'uncertainty' needs a committee model (deploy a committee "
                 ".mlff file); {} holds a single model",
                 model_path);
    grow_committee_arrays();
    ncol = 0;
    return uncertainty;
  }
  return nullptr;
}

void *PairMLFF::extract(const char *name, int &dim)
{
  // fix pair ... uncertainty 1 asks for a trigger; the uncertainty is computed every step
  static int always = 1;
  if (strcmp(name, "uncertainty_flag") == 0) {
    dim = 0;
    return &always;
  }
  if (strcmp(name, "cutoff") == 0) {
    dim = 0;
    return &model_cutoff;
  }
  return nullptr;
}

double PairMLFF::memory_usage()
{
  double bytes = Pair::memory_usage();
  bytes += static_cast<double>(node_of.capacity()) * sizeof(int);
  bytes += static_cast<double>(edge_i.capacity() + edge_j.capacity()) * sizeof(int);
  bytes += static_cast<double>(edge_index.capacity()) * sizeof(int64_t);
  bytes += static_cast<double>(edge_vec.capacity()) * sizeof(double);
  bytes += static_cast<double>(nmax_committee) * (3 * committee_size + 1) * sizeof(double);
  return bytes;
}
