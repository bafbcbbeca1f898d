/* A probe of the build's layering (tests/system/layering/layering.cmake): compiled as a
 * layer that must not use MPI, this fails with the poison header's message. */
#include <mpi.h>

int sp_layering_probe(void);
int sp_layering_probe(void) {
    return 0;
}
