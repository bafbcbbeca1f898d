/* The alpha-beta model of scale/costmodel.h against values worked out by hand
 * (docs/scaling.md), the bucket plan against the trainer's reducer, and the --network names. */
#include <math.h>
#include <string.h>

#include "scale/costmodel.h"
#include "comm/comm.h"
#include "comm/reducer.h"
#include "testutil.h"

static int near_(double a, double b) {
    return fabs(a - b) <= 1e-12 + 1e-9 * fabs(b);
}

/* The 2-layer step the step-time checks below work out by hand: layer 1 = floats [100, 200),
 * layer 0 = [0, 100); forward 1 + 1 ms, backward 3 (layer 1) + 2 ms, update 1 ms. */
static const double two_fwd[2] = {1e-3, 1e-3}, two_bwd[2] = {3e-3, 2e-3};
static const long two_w_off[2] = {0, 100};
static const sp_cost_profile two_layers = {.nlayers = 2,
                                           .fwd_s = two_fwd,
                                           .bwd_s = two_bwd,
                                           .w_off = two_w_off,
                                           .update_s = 1e-3,
                                           .nparams = 200};

int main(void) {
    /* alpha 1 us, beta 1 ns/byte (1 GB/s): round numbers */
    const sp_net net = {.name = "test", .alpha = 1e-6, .beta = 1e-9};
    const double n = 4e6; /* 4 MB */
    /* ring, P = 8: 14 alpha + 2*7/8*4e6 ns = 14 us + 7 ms */
    CHECK(near_(sp_cost_allreduce(SP_AR_RING, 8, n, &net), 14e-6 + 7e-3), "ring 8");
    /* recursive doubling, P = 8: 3 (1 us + 4 ms) */
    CHECK(near_(sp_cost_allreduce(SP_AR_RDB, 8, n, &net), 3 * (1e-6 + 4e-3)), "rdb 8");
    /* Rabenseifner, P = 1024: 20 us + 2*1023/1024*4 ms */
    CHECK(near_(sp_cost_allreduce(SP_AR_RABENSEIFNER, 1024, n, &net), 20e-6 + 8e-3 * 1023 / 1024),
          "rab 1024");
    /* binomial, P = 2: 2 (1 us + 4 ms); P = 5 rounds log2 up to 3: 6 (1 us + 4 ms) */
    CHECK(near_(sp_cost_allreduce(SP_AR_BINOMIAL, 2, n, &net), 2 * (1e-6 + 4e-3)), "binomial 2");
    CHECK(near_(sp_cost_allreduce(SP_AR_BINOMIAL, 5, n, &net), 6 * (1e-6 + 4e-3)), "binomial 5");
    /* the surrogate: one alpha + the ring's bytes */
    CHECK(near_(sp_cost_allreduce(SP_AR_RING_SURROGATE, 4, n, &net), 1e-6 + 6e-3), "surrogate");
    CHECK(sp_cost_allreduce(SP_AR_RING, 1, n, &net) == 0, "one rank: free");

    /* Open MPI 4.1's fixed decisions (commutative op) */
    CHECK(sp_cost_ompi_blocking_alg(8, 4e6) == SP_AR_RABENSEIFNER, "ompi 8 large");
    CHECK(sp_cost_ompi_blocking_alg(8, 24) == SP_AR_RDB, "ompi 8 small");
    CHECK(sp_cost_ompi_blocking_alg(256, 1000) == SP_AR_BINOMIAL, "ompi 256 small");
    CHECK(sp_cost_ompi_blocking_alg(2, 100000) == SP_AR_RING, "ompi 2 segmented ring");
    CHECK(sp_cost_libnbc_alg(64, 4e6, true) == SP_AR_BINOMIAL, "libnbc in place");
    CHECK(sp_cost_libnbc_alg(64, 4e6, false) == SP_AR_RABENSEIFNER, "libnbc");
    CHECK(sp_cost_libnbc_alg(2, 4e6, false) == SP_AR_BINOMIAL, "libnbc 2");

    /* bucket plan == the reducer's (sp_reducer needs no communication to be built) */
    {
        size_t b0[8], l0[8];
        const int nb = sp_cost_bucket_plan(1863690, 4u << 20, b0, l0, 8);
        CHECK(nb == 2, "mlp-wide: %d buckets", nb);
        CHECK(b0[0] == 1863690 - 1048576 && l0[0] == 1048576, "bucket 0");
        CHECK(b0[1] == 0 && l0[1] == 1863690 - 1048576, "bucket 1");
        sp_reducer *r = NULL;
        float dummy[1];
        CHECK(sp_reducer_create(&r, NULL, dummy, 1863690, 4u << 20) == SP_OK, "reducer");
        CHECK(r && sp_reducer_num_buckets(r) == nb, "reducer buckets");
        for (int i = 0; r && i < nb; ++i) {
            size_t b, l;
            sp_reducer_bucket(r, i, &b, &l);
            CHECK(b == b0[i] && l == l0[i], "bucket %d", i);
        }
        sp_reducer_free(r);
    }

    /* a step, by hand: 2 layers with parameters; layer 1 = floats [100, 200), layer 0 [0, 100);
     * buckets of 100 floats (400 bytes): bucket 0 = layer 1, ready after 2 ms of backward;
     * bucket 1 = layer 0, ready at the end of backward (5 ms). */
    {
        const sp_net slow = {.name = "slow", .alpha = 0, .beta = 1e-5}; /* 400 B: 4 ms at P=2 */
        sp_cost_step s;
        sp_cost_step_time(&two_layers, 400, 2, &slow, SP_AR_RING, true, &s);
        /* bucket 0: [2, 6) ms, bucket 1: [6, 10) ms; step = 2 fwd + 10 + 0.24 loss sum + 1 */
        const double loss = 24 * 1e-5;
        CHECK(s.buckets == 2, "%d buckets", s.buckets);
        CHECK(near_(s.compute_s, 8e-3), "compute %g", s.compute_s);
        CHECK(near_(s.step_s, 2e-3 + 10e-3 + loss + 1e-3), "overlap step %g", s.step_s);
        CHECK(near_(s.comm_s, 8e-3 + loss), "comm %g", s.comm_s);
        CHECK(near_(s.efficiency, 8e-3 / s.step_s), "efficiency");
        /* no overlap: 2 fwd + 5 bwd + 2 x (Open MPI's choice for 400 B at P = 2: recursive
         * doubling, 1 x 4 ms) + loss + 1 */
        sp_cost_step_time(&two_layers, 400, 2, &slow, SP_AR_RING, false, &s);
        CHECK(near_(s.step_s, 2e-3 + 5e-3 + 8e-3 + loss + 1e-3), "blocking step %g", s.step_s);
        /* one rank: the compute alone */
        sp_cost_step_time(&two_layers, 400, 1, &slow, SP_AR_RING, true, &s);
        CHECK(near_(s.step_s, 8e-3) && near_(s.efficiency, 1), "one rank");
    }

    /* gamma: the reduction arithmetic, per algorithm (alpha 1 us, beta 1 ns/B, gamma 0.5 ns/B) */
    {
        const sp_net g = {.name = "g", .alpha = 1e-6, .beta = 1e-9, .gamma = 0.5e-9};
        /* ring P = 8: 14 us + 7 ms + 7/8 * 4e6 * 0.5 ns = + 1.75 ms */
        CHECK(near_(sp_cost_allreduce(SP_AR_RING, 8, n, &g), 14e-6 + 7e-3 + 1.75e-3), "ring gamma");
        /* Rabenseifner P = 2: 2 us + 4 ms + 1/2 * 4e6 * 0.5 ns = + 1 ms */
        CHECK(near_(sp_cost_allreduce(SP_AR_RABENSEIFNER, 2, n, &g), 2e-6 + 4e-3 + 1e-3),
              "rab gamma");
        /* recursive doubling P = 8: 3 (1 us + 4 ms + 2 ms) */
        CHECK(near_(sp_cost_allreduce(SP_AR_RDB, 8, n, &g), 3 * (1e-6 + 4e-3 + 2e-3)), "rdb gamma");
        /* binomial P = 8: 6 (1 us + 4 ms) + 3 * 2 ms (the root sums log2 P times) */
        CHECK(near_(sp_cost_allreduce(SP_AR_BINOMIAL, 8, n, &g), 6 * (1e-6 + 4e-3) + 6e-3),
              "binomial gamma");
        /* surrogate P = 4: 1 us + 6 ms + 3/4 * 2 ms */
        CHECK(near_(sp_cost_allreduce(SP_AR_RING_SURROGATE, 4, n, &g), 1e-6 + 6e-3 + 1.5e-3),
              "surrogate gamma");
    }

    /* a CPU-driven network and oversubscription, on the 2-layer step above */
    {
        /* 400 B at P = 2: ring 4 ms (beta) + 200 B * 1e-5 = 2 ms (gamma) */
        sp_net shm = {.name = "shm", .beta = 1e-5, .gamma = 1e-5, .cpu_driven = true};
        const double loss = 24 * 1e-5 + 24 * 1e-5; /* recursive doubling, P = 2: beta + gamma */
        sp_cost_step s;
        sp_cost_step_time(&two_layers, 400, 2, &shm, SP_AR_RING, true, &s);
        /* nothing overlaps: 2 fwd + 5 bwd + 2 x 6 ms + loss + 1 update */
        CHECK(near_(s.step_s, 8e-3 + 12e-3 + loss), "cpu-driven step %g", s.step_s);
        CHECK(near_(s.comm_s, 12e-3 + loss) && near_(s.hidden, 0), "cpu-driven comm %g hidden %g",
              s.comm_s, s.hidden);
        /* the same network apart from the cores: bucket 0 [2, 8), bucket 1 [8, 14) ms */
        shm.cpu_driven = false;
        sp_cost_step_time(&two_layers, 400, 2, &shm, SP_AR_RING, true, &s);
        CHECK(near_(s.step_s, 2e-3 + 14e-3 + loss + 1e-3), "overlapped step %g", s.step_s);
        /* 4 ranks on 2 cores: compute x 2 (16 ms); network apart: comm unchanged. Ring at
         * P = 4, 400 B: 1.5 * 400 * 1e-5 + 0.75 * 400 * 1e-5 = 9 ms per bucket; overlapped:
         * bucket 0 ready at 2 x 2 ms = 4 ms: [4, 13), bucket 1 [13, 22) */
        shm.cores = 2;
        CHECK(near_(sp_cost_oversubscription(4, &shm), 2) &&
                  near_(sp_cost_oversubscription(2, &shm), 1) &&
                  near_(sp_cost_oversubscription(3, &shm), 1.5),
              "oversubscription factor");
        const double loss4 = 2 * (24 * 1e-5 + 24 * 1e-5);
        sp_cost_step_time(&two_layers, 400, 4, &shm, SP_AR_RING, true, &s);
        CHECK(near_(s.compute_s, 16e-3), "oversubscribed compute %g", s.compute_s);
        CHECK(near_(s.step_s, 4e-3 + 22e-3 + loss4 + 2e-3), "oversubscribed, apart %g", s.step_s);
        /* CPU-driven: the allreduces time-share the cores too: 16 + 2 x 2 x 9 ms + 2 x loss */
        shm.cpu_driven = true;
        sp_cost_step_time(&two_layers, 400, 4, &shm, SP_AR_RING, true, &s);
        CHECK(near_(s.step_s, 16e-3 + 36e-3 + 2 * loss4), "oversubscribed cpu-driven %g", s.step_s);
        /* a binomial tree keeps 2 of 4 ranks busy: no sharing on 2 cores; 2 log2(4) * 4 ms +
         * log2(4) * 4 ms = 24 ms per bucket */
        sp_cost_step_time(&two_layers, 400, 4, &shm, SP_AR_BINOMIAL, true, &s);
        CHECK(near_(s.step_s, 16e-3 + 48e-3 + 2 * loss4), "oversubscribed binomial %g", s.step_s);
        /* blocking (400 B at P = 4: recursive doubling, 2 x (4 + 4) ms = 16 ms, x 2 shared) */
        sp_cost_step_time(&two_layers, 400, 4, &shm, SP_AR_RING, false, &s);
        CHECK(near_(s.step_s, 16e-3 + 64e-3 + 2 * loss4), "oversubscribed blocking %g", s.step_s);
        /* one rank on 2 cores: compute alone */
        sp_cost_step_time(&two_layers, 400, 1, &shm, SP_AR_RING, true, &s);
        CHECK(near_(s.step_s, 8e-3), "one rank, cpu-driven");
    }

    /* the cluster presets: gamma 0, not CPU-driven, one core per rank, and the step exactly the
     * alpha-beta one (mlp-wide-like: 1.86 M floats, 4 MB buckets, ib100, 64 ranks) */
    {
        sp_net ib;
        CHECK(sp_net_parse("ib100", &ib) == SP_OK && ib.gamma == 0 && !ib.cpu_driven &&
                  ib.cores == 0,
              "ib100 preset");
        const double fwd[5] = {1e-3, 1e-4, 2e-3, 1e-4, 1e-4},
                     bwd[5] = {2e-3, 1e-4, 3e-3, 1e-4, 1e-4};
        const long w_off[5] = {0, -1, 803840, -1, 1853440};
        const sp_cost_profile p = {.nlayers = 5,
                                   .fwd_s = fwd,
                                   .bwd_s = bwd,
                                   .w_off = w_off,
                                   .update_s = 1e-3,
                                   .nparams = 1863690};
        sp_cost_step s;
        sp_cost_step_time(&p, 4u << 20, 64, &ib, SP_AR_RABENSEIFNER, true, &s);
        /* bucket 0 (4 MiB, ready after layers 4..2: 3.2 ms) then bucket 1 (layer 0, at 5.3 ms) */
        const double n0 = 1048576.0 * 4, n1 = (1863690.0 - 1048576) * 4;
        const double t0 = 12e-6 + 2 * 63.0 / 64 * n0 * 8e-11,
                     t1 = 12e-6 + 2 * 63.0 / 64 * n1 * 8e-11;
        const double end = fmax(3.2e-3 + t0, 5.3e-3) + t1;
        CHECK(near_(s.step_s, 3.3e-3 + end + 6 * (1e-6 + 24 * 8e-11) + 1e-3), "ib100 step %g",
              s.step_s);
    }

    /* --network names */
    sp_net x;
    CHECK(sp_net_parse("ib100", &x) == SP_OK && near_(x.alpha, 1e-6) && near_(x.beta, 8e-11),
          "ib100");
    CHECK(sp_net_parse("2:200", &x) == SP_OK && near_(x.alpha, 2e-6) && near_(x.beta, 4e-11),
          "custom");
    CHECK(sp_net_parse("ib", &x) == SP_ERR_ARG, "unknown name");
    CHECK(sp_net_parse("2:", &x) == SP_ERR_ARG, "half a custom");
    CHECK(sp_net_parse("1:0", &x) == SP_ERR_ARG, "zero bandwidth");
    CHECK(sp_net_parse("2:200:0.5", &x) == SP_OK && near_(x.gamma, 0.5e-9) && !x.cpu_driven,
          "custom with gamma");
    CHECK(sp_net_parse("shm", &x) == SP_OK && x.cpu_driven && x.gamma > 0 && x.beta > 0,
          "shm preset");
    CHECK(sp_net_parse("shm:0.3:25:0.2", &x) == SP_OK && x.cpu_driven && near_(x.alpha, 0.3e-6) &&
              near_(x.beta, 8.0 / 25e9) && near_(x.gamma, 0.2e-9),
          "custom shm");
    CHECK(sp_net_parse("shm:0.3:25", &x) == SP_ERR_ARG, "custom shm without gamma");
    CHECK(sp_net_parse("2:200:-1", &x) == SP_ERR_ARG, "negative gamma");
    CHECK(sp_net_parse("2:200:1:3", &x) == SP_ERR_ARG, "four fields");
    return sp_test_summary("costmodel");
}
