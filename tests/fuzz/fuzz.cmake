# Fuzz targets (tests/fuzz/fuzz_<name>.c), included from the top-level CMakeLists.txt.
#   SHARDPROP_FUZZ=ON (clang): one libFuzzer executable per target, fuzz_<name>, the library
#     built with -fsanitize=fuzzer-no-link,address,undefined. Run them with scripts/fuzz.sh.
#   Otherwise (tests on): replay_<name> runs the committed corpus tests/fuzz/corpus/<name>/ and
#     the regression inputs tests/fuzz/regress/<name>/ once each, as the CTest test
#     fuzz_replay_<name>: every input that ever crashed a target stays a test.
set(SP_FUZZ_TARGETS spec config data ckpt idx csv)
set(SP_FUZZ_DIR ${CMAKE_SOURCE_DIR}/tests/fuzz)

if(SHARDPROP_FUZZ)
  foreach(t ${SP_FUZZ_TARGETS})
    add_executable(fuzz_${t} ${SP_FUZZ_DIR}/fuzz_${t}.c ${SP_FUZZ_DIR}/fuzz_common.c)
    target_include_directories(fuzz_${t} PRIVATE ${CMAKE_SOURCE_DIR}/src ${SP_FUZZ_DIR})
    target_link_libraries(fuzz_${t} PRIVATE shardprop)
    target_compile_options(fuzz_${t} PRIVATE -fsanitize=fuzzer)
    target_link_options(fuzz_${t} PRIVATE -fsanitize=fuzzer)
  endforeach()
elseif(BUILD_TESTING)
  # writes the checkpoint seeds of corpus/ckpt (scripts/fuzz-seeds.sh)
  add_executable(fuzz_seed_ckpt ${SP_FUZZ_DIR}/seed_ckpt.c)
  target_include_directories(fuzz_seed_ckpt PRIVATE ${CMAKE_SOURCE_DIR}/src)
  target_link_libraries(fuzz_seed_ckpt PRIVATE shardprop)
  foreach(t ${SP_FUZZ_TARGETS})
    add_executable(replay_${t} ${SP_FUZZ_DIR}/fuzz_${t}.c ${SP_FUZZ_DIR}/fuzz_common.c
                               ${SP_FUZZ_DIR}/replay_main.c)
    target_include_directories(replay_${t} PRIVATE ${CMAKE_SOURCE_DIR}/src ${SP_FUZZ_DIR})
    target_link_libraries(replay_${t} PRIVATE shardprop)
    set(dirs ${SP_FUZZ_DIR}/corpus/${t})
    if(EXISTS ${SP_FUZZ_DIR}/regress/${t})
      list(APPEND dirs ${SP_FUZZ_DIR}/regress/${t})
    endif()
    add_test(NAME fuzz_replay_${t} COMMAND replay_${t} ${dirs})
    set_tests_properties(fuzz_replay_${t} PROPERTIES TIMEOUT 120 LABELS fuzz
        ENVIRONMENT "${SP_TEST_ENV}")
  endforeach()
endif()
