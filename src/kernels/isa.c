/* The one ISA dispatcher of the kernels (kernels/isa.h). */
#include "kernels/isa.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool isa_supported_(sp_isa isa) {
    switch (isa) {
    case SP_ISA_PORTABLE:
        return true;
#if defined(__x86_64__) && defined(__GNUC__)
    case SP_ISA_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case SP_ISA_AVX512:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    default:
        return false;
    }
}

sp_isa sp_isa_best(void) {
    if (isa_supported_(SP_ISA_AVX512)) return SP_ISA_AVX512;
    if (isa_supported_(SP_ISA_AVX2)) return SP_ISA_AVX2;
    return SP_ISA_PORTABLE;
}

const char *sp_isa_name(sp_isa isa) {
    switch (isa) {
    case SP_ISA_PORTABLE:
        return "portable";
    case SP_ISA_AVX2:
        return "avx2";
    case SP_ISA_AVX512:
        return "avx512";
    }
    return "unknown";
}

static atomic_int sp_isa_ = -1; /* -1: not chosen yet */

bool sp_isa_set(sp_isa isa) {
    if (!isa_supported_(isa)) return false;
    atomic_store(&sp_isa_, (int)isa);
    return true;
}

/* The first use: SHARDPROP_GEMM_ISA if set (and possible), else the best. */
static sp_isa isa_choose_(void) {
    sp_isa best = sp_isa_best();
    const char *env = getenv("SHARDPROP_GEMM_ISA");
    if (!env || !*env) return best;
    for (int i = SP_ISA_PORTABLE; i <= SP_ISA_AVX512; ++i) {
        if (strcmp(env, sp_isa_name((sp_isa)i)) != 0) continue;
        if (isa_supported_((sp_isa)i)) return (sp_isa)i;
        fprintf(stderr, "shardprop: SHARDPROP_GEMM_ISA=%s: this CPU lacks it; using %s\n", env,
                sp_isa_name(best));
        return best;
    }
    fprintf(stderr,
            "shardprop: SHARDPROP_GEMM_ISA=%s: unknown (expected portable, avx2 or avx512); "
            "using %s\n",
            env, sp_isa_name(best));
    return best;
}

sp_isa sp_isa_active(void) {
    int isa = atomic_load(&sp_isa_);
    if (isa < 0) {
        int expected = -1;
        atomic_compare_exchange_strong(&sp_isa_, &expected, (int)isa_choose_());
        isa = atomic_load(&sp_isa_);
    }
    return (sp_isa)isa;
}
