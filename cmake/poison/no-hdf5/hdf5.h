/* On the include path of every layer but src/io/ and src/data/ (CMakeLists.txt). */
#error "this layer of shardprop must not use HDF5: only src/io/ and src/data/ do (CONTRIBUTING.md)"
