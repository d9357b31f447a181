/* Registration of pair_style mlff with LAMMPS (auto-loaded from LAMMPS_PLUGIN_PATH, or
   `plugin load mlffplugin.so`). */

#include "lammps.h"
#include "lammpsplugin_decl.h"
#include "pair_mlff.h"

using namespace LAMMPS_NS;

static Pair *create_pair_mlff(LAMMPS *lmp)
{
  return new PairMLFF(lmp);
}

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  auto *lammps = static_cast<LAMMPS *>(lmp);
  auto register_plugin = reinterpret_cast<mlff_plugin_regfunc>(regfunc);

  mlff_lammpsplugin_t plugin;
  // the running LAMMPS's own version string: the plugin is built against its headers
  plugin.version = lammps->version;
  plugin.style = "pair";
  plugin.name = "mlff";
  plugin.info = "mlff machine-learned force fields (TorchScript models from `mlff deploy`)";
  plugin.author = "mlff developers";
  plugin.creator.v1 = reinterpret_cast<mlff_plugin_factory1 *>(&create_pair_mlff);
  plugin.handle = handle;
  (*register_plugin)(&plugin, lmp);
}
