/* Independent double-precision reference layers for the tests: direct loops written from the
 * definitions (direct convolution, not im2col), used as the oracle for forward values and, by
 * central finite differences, for gradients. */
#ifndef SP_TEST_REF_LAYERS_H
#define SP_TEST_REF_LAYERS_H

#include <stdint.h>

void ref_dense(double *y, const double *x, const double *w, const double *b, int B, int in,
               int out);
void ref_conv2d(double *y, const double *x, const double *w, const double *b, int B, int c, int h,
                int wd, int oc, int k, int stride, int pad);
void ref_maxpool(double *y, const double *x, int B, int c, int h, int w, int k, int stride);
void ref_avgpool(double *y, const double *x, int B, int c, int h, int w, int k, int stride);
/* act: 0 relu, 1 leaky_relu, 2 tanh, 3 sigmoid, 4 gelu */
void ref_act(double *y, const double *x, int64_t n, int act, double slope);
/* mean losses over the batch, as PyTorch's defaults */
double ref_xent(const double *z, const int32_t *labels, int B, int C);
double ref_mse(const double *o, const double *t, int B, int T);

#endif
