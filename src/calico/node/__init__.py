"""calico/node: start-up (Node registration) and supervision of Felix, BGP and BIRD."""
