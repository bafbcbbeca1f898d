/* The attention pair kernels of attention_pair.h with 16-float vectors: built with -mavx512f
 * -mavx512vl, called only when the CPU has them (the same bits as the portable build). */
#if defined(__x86_64__) && defined(__GNUC__)

#define SP_ATT_VL   16
#define SP_ATT_MR   8
#define SP_ATT_NAME avx512
#include "layers/attention_pair.h"

#else
typedef int sp_attention_avx512_unused_; /* ISO C: a translation unit is not empty */
#endif
