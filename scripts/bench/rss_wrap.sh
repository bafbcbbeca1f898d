#!/bin/sh
# rss_wrap.sh PROG ARGS...: run PROG, writing its peak RSS (KiB, GNU time %M) to
# $RSS_OUT.<MPI rank> (rank 0 when not under mpirun). Used by run.sh for every shardprop rank.
exec /usr/bin/time -f %M -o "${RSS_OUT:-rss}.${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-0}}" "$@"
