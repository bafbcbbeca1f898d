/* Dense (fully connected) layer, nn.Linear. */
#include "kernels/gemm.h"
#include "layers/layers.h"

void sp_dense_forward(float *y, const float *x, const float *w, const float *b, int B, int in,
                      int out) {
    if (B == 0) return;
    /* y (B, out) = x (B, in) * W^T (in, out) */
    sp_gemm(false, true, B, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
    /* no bias (NULL): the GEMM's sums as they are, the same bits as adding a zero bias (they
     * start from +0, so none is -0) */
    if (!b) return;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < B; ++i)
        for (int j = 0; j < out; ++j) y[(size_t)i * out + j] += b[j];
}

void sp_col_sums(float *restrict s, const float *restrict x, int rows, int n, size_t ld) {
    enum { W = 32 }; /* 32 sums in registers (4 AVX or 8 SSE vectors): no store in the row loop */
    int j = 0;
    for (; j + W <= n; j += W) {
        float a[W] = {0};
        for (int i = 0; i < rows; ++i) {
            const float *r = x + (size_t)i * ld + j;
            for (int c = 0; c < W; ++c) a[c] += r[c];
        }
        for (int c = 0; c < W; ++c) s[j + c] = a[c];
    }
    for (; j < n; ++j) {
        float a = 0.0f;
        for (int i = 0; i < rows; ++i) a += x[(size_t)i * ld + j];
        s[j] = a;
    }
}

void sp_dense_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                       const float *w, int B, int in, int out, bool acc) {
    if (B == 0) return;
    /* Each weight's share of the blame: dW (out, in) (+)= dy^T (out, B) * x (B, in).
     * The sum over samples is GEMM's K dimension, which threads never split. */
    if (dw) sp_gemm(true, false, out, in, B, 1.0f, dy, out, x, in, acc ? 1.0f : 0.0f, dw, in);
    /* db (out) (+)= column sums of dy: each output's sum, s = ((0 + dy[0][j]) + dy[1][j]) + ...
     * in sample order (sp_col_sums), then db[j] (+)= s. Blocks of outputs are owned by one
     * thread. */
    enum { DB_BLOCK = 256 };
#pragma omp parallel for schedule(static) if (db)
    for (int j0 = 0; j0 < (db ? out : 0); j0 += DB_BLOCK) {
        const int nj = out - j0 < DB_BLOCK ? out - j0 : DB_BLOCK;
        if (!acc) {
            sp_col_sums(db + j0, dy + j0, B, nj, (size_t)out);
            continue;
        }
        float s[DB_BLOCK];
        sp_col_sums(s, dy + j0, B, nj, (size_t)out);
        for (int j = 0; j < nj; ++j) db[j0 + j] += s[j];
    }
    /* The rest of the blame flows down: dx (B, in) = dy (B, out) * W (out, in). */
    if (dx) sp_gemm(false, false, B, in, out, 1.0f, dy, out, w, in, 0.0f, dx, in);
}
