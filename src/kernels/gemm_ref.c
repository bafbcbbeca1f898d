/* sp_gemm_ref: the executable specification of GEMM (see gemm.h). Deliberately plain. */
#include "kernels/gemm.h"

#include <stddef.h>

void sp_gemm_ref(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    for (int i = 0; i < M; ++i) {
        for (int j = 0; j < N; ++j) {
            float *c = &C[(size_t)i * ldc + j];
            if (alpha == 0.0f || K == 0) { /* A and B are not read (as in BLAS) */
                *c = beta == 0.0f ? 0.0f : beta * *c;
                continue;
            }
            double acc = 0.0;
            for (int k = 0; k < K; ++k) {
                double a = trans_a ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                double b = trans_b ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                acc += a * b;
            }
            double r = (double)alpha * acc;
            if (beta != 0.0f) r += (double)beta * (double)*c;
            *c = (float)r;
        }
    }
}
