"""BGP for calico-py: datastore -> BIRD 2 configuration (confd's job), and BIRD's status.

`view` (pure) resolves resources into what one node's BIRD must do, `render` (pure) writes
bird.cfg, `agent` watches the datastore and keeps `run_dir/bird.cfg` and BIRD in step,
`birdctl` talks to BIRD's control socket (used by `calicoctl node status`).
"""
