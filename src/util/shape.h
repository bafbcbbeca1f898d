/* A sample shape as text, for messages and reports. */
#ifndef SP_UTIL_SHAPE_H
#define SP_UTIL_SHAPE_H

#include <stddef.h>
#include <stdint.h>

/* "(1, 28, 28)", "(784,)": as Python prints the tuple (PyTorch's and h5py's shapes). */
void sp_shape_str(char *buf, size_t cap, const int64_t *shape, int rank);
/* "(1,28,28)", "(784)": the compact form that data-file messages and `inspect` print. */
void sp_shape_str_compact(char *buf, size_t cap, const int64_t *shape, int rank);

#endif
