"""The paper's four models (Wang et al., NeurIPS 2018, evaluation section), each
trained by one compiled call per step: `rnn`, `lstm`, `treelstm`, `cnn`.

Every model module has the same surface:

    config = module.Config()                 # the paper's sizes; Config.small() for tests
    state = module.init(rng, config)         # {"params": ..., "opt": ..., ...}: a pytree
    step = module.make_step(config, backend) # an ln.jit function: forward, backward, update
    for batch in module.batches(rng, config):
        loss, state = step(state, batch)

The data is made without the network (see `data.py`).
"""
