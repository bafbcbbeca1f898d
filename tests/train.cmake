add_library(sp_trainutil STATIC train_util.c)
target_link_libraries(sp_trainutil PUBLIC sp_testutil)
sp_test(train_mpi TIMEOUT 600 LABELS mpi)
target_link_libraries(test_train_mpi PRIVATE sp_trainutil)
