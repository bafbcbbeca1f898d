# The layering is enforced by the build (top-level CMakeLists.txt, sp_layer_target): a probe
# that includes <mpi.h> or <hdf5.h> is compiled as each layer would compile it. In a layer that may
# not use the library the build must fail with the poison header's message; where the layer
# may, it must build (the probe itself is sound). The probes are not part of `all`.
foreach(probe core:mpi core:hdf5 io:mpi comm:hdf5 train:mpi train:hdf5 comm:mpi io:hdf5)
  string(REPLACE ":" ";" parts ${probe})
  list(GET parts 0 layer)
  list(GET parts 1 lib)
  set(t layering_probe_${layer}_${lib})
  sp_layer_target(${t} ${layer} ${CMAKE_CURRENT_LIST_DIR}/includes_${lib}.c)
  set_target_properties(${t} PROPERTIES EXCLUDE_FROM_ALL ON)
  add_test(NAME layering_${layer}_${lib}
      COMMAND ${CMAKE_COMMAND} --build ${CMAKE_BINARY_DIR} --target ${t})
  list(FIND SP_LAYER_${layer}_POISON ${lib} poisoned)
  if(poisoned GREATER -1)
    set_tests_properties(layering_${layer}_${lib} PROPERTIES
        PASS_REGULAR_EXPRESSION "this layer of shardprop must not use")
  endif()
  set_tests_properties(layering_${layer}_${lib} PROPERTIES LABELS build TIMEOUT 120
      RESOURCE_LOCK build_tree)
endforeach()
