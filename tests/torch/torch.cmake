# Cross-checks against PyTorch, run with /usr/bin/python3 (h5py, torch). Each fails, never skips,
# when h5py or torch is missing: CI installs python3-h5py and python3-torch.

# The checkpoint layout: h5py loads a checkpoint written by `test_checkpoint --export` (tests/unit/io)
# into nn.Sequential and torch.optim.Adam.
add_test(NAME ckpt_torch COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/ckpt_torch.py
         $<TARGET_FILE:test_checkpoint>)
set_tests_properties(ckpt_torch PROPERTIES TIMEOUT 300 ENVIRONMENT "${SP_TEST_ENV}")

# The optimizers: 20-step trajectories of `test_optim --dump` (tests/unit/optim) against torch.optim.
add_test(NAME optim_vs_torch COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/optim_vs_torch.py
         $<TARGET_FILE:test_optim>)
set_tests_properties(optim_vs_torch PROPERTIES TIMEOUT 300 ENVIRONMENT "${SP_TEST_ENV}")

# `shardprop predict`: the checkpoint loaded into nn.Sequential (ckpt_torch.py's load_checkpoint)
# predicts the same probabilities / outputs within 1e-5.
add_test(NAME predict_torch COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/predict_torch.py)
set_tests_properties(predict_torch PROPERTIES TIMEOUT 300 ENVIRONMENT "${SP_TEST_ENV}")

# spgraph.py, the spec language (graphs and the GPT's sequence layers included) as PyTorch
# modules with shardprop's tensor names, on its own: shapes, state_dict keys, parameter counts,
# checkpoint round trips, errors; attention's causality and the tied embedding.
add_test(NAME spgraph_selftest COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/spgraph_selftest.py)
set_tests_properties(spgraph_selftest PROPERTIES TIMEOUT 300 ENVIRONMENT "${SP_TEST_ENV}")

# Graphs trained and evaluated: a ResNet (projection and identity shortcuts, batch norm), a U-Net
# (maxpool, upsample, concat of saved skips) and a pre-norm layer-norm stack, 5 SGD and AdamW
# steps of `shardprop train` from its own initial checkpoint against the same steps in PyTorch
# (every tensor of the state_dict, batch-norm buffers included, within 1e-4), on 1 rank and on
# 2 (global batch norm = the 1-rank run; --bn-stats local = DDP without SyncBatchNorm, not the
# 1-rank run), and `predict` / `eval` of the trained checkpoints within 1e-5.
add_test(NAME graph_torch COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/graph_torch.py
         $<TARGET_FILE:shardprop_cli>)
set_tests_properties(graph_torch PROPERTIES TIMEOUT 300 ENVIRONMENT "${SP_TEST_ENV}"
    PROCESSORS 2 LABELS mpi)

# A small GPT (embedding, pos_embedding, 2 pre-norm blocks of causal attention and a tanh-GELU
# MLP, the head tied to the embedding) on token data: the initial checkpoint loads strictly into
# spgraph; 8 AdamW steps with clipping and a cosine warmup schedule (file order), and 6 shuffled
# steps over 2 epochs (shardprop's permutation, splm.py), on 1 and 2 ranks against PyTorch
# (every tensor within 1e-4, each step's loss within 1e-5); the validation loss within 1e-5;
# `generate --temperature 0` equal to PyTorch's greedy argmax.
add_test(NAME gpt_torch COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/gpt_torch.py
         $<TARGET_FILE:shardprop_cli>)
set_tests_properties(gpt_torch PROPERTIES TIMEOUT 300 ENVIRONMENT "${SP_TEST_ENV}"
    PROCESSORS 2 LABELS mpi)
