# Written by hand for examples/dual-stack.yaml: node-c is pinned to 10.244.9.0/24, the
# others take the lowest CIDRs in name order; Node.spec.podCIDRs holds one CIDR per family
# and its first entry is spec.podCIDR (Kubernetes API reference, Node v1).
kubectl patch node node-a --type merge -p '{"spec":{"podCIDR":"10.244.0.0/24","podCIDRs":["10.244.0.0/24","fd00:10:244::/64"]}}'
kubectl patch node node-b --type merge -p '{"spec":{"podCIDR":"10.244.1.0/24","podCIDRs":["10.244.1.0/24","fd00:10:244:1::/64"]}}'
kubectl patch node node-c --type merge -p '{"spec":{"podCIDR":"10.244.9.0/24","podCIDRs":["10.244.9.0/24","fd00:10:244:2::/64"]}}'
