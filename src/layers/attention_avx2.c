/* The attention pair kernels of attention_pair.h with 8-float vectors: built with -mavx2, called
 * only when the CPU has it (the same bits as the portable build). */
#if defined(__x86_64__) && defined(__GNUC__)

#define SP_ATT_VL   8
#define SP_ATT_MR   6
#define SP_ATT_NAME avx2
#include "layers/attention_pair.h"

#else
typedef int sp_attention_avx2_unused_; /* ISO C: a translation unit is not empty */
#endif
