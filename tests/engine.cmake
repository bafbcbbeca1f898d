add_library(sp_reflayers STATIC ref_layers.c)
target_link_libraries(sp_reflayers PUBLIC sp_options m)
target_link_libraries(sp_testutil PUBLIC sp_reflayers)
sp_test(layers)
sp_test(model)
sp_test(threads)

# The demo: two spirals in memory reach 99% training accuracy within its default 30 epochs
# (the command exits non-zero when they do not).
add_test(NAME demo COMMAND shardprop_cli demo --quiet --epochs 30)
set_tests_properties(demo PROPERTIES TIMEOUT 120 PASS_REGULAR_EXPRESSION "meets the 0.99 target")
