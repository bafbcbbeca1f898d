/* On the include path of every layer but src/comm/ (CMakeLists.txt): MPI belongs to comm. */
#error "this layer of shardprop must not use MPI: only src/comm/ does (CONTRIBUTING.md)"
