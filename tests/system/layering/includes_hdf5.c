/* A probe of the build's layering (tests/system/layering/layering.cmake): compiled as a
 * layer that must not use HDF5, this fails with the poison header's message. */
#include <hdf5.h>

int sp_layering_probe(void);
int sp_layering_probe(void) {
    return 0;
}
