"""The manifests the preview and trace tests share: a `shop` namespace with a web and a db
workload on two hosts, every endpoint allowed by a low-priority policy (`SHOP`), and the
change they preview (`DENY_DB`): db takes web's 8080 and refuses 5432 from anyone."""

SHOP = """
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: kns.shop}
spec: {labelsToApply: {pcns.projectcalico.org/name: shop}}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {namespace: shop, labels: {app: web}}
spec: {node: host-1, orchestrator: k8s, pod: web-0, endpoint: eth0, interfaceName: caliweb0,
       ipNetworks: [198.19.0.1/32], profiles: [kns.shop]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {namespace: shop, labels: {app: db}}
spec: {node: host-2, orchestrator: k8s, pod: db-0, endpoint: eth0, interfaceName: calidb0,
       ipNetworks: [198.19.0.2/32], profiles: [kns.shop]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: allow-all}
spec: {order: 1000, selector: all(), ingress: [{action: Allow}], egress: [{action: Allow}]}
"""
DENY_DB = """
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db-ingress, namespace: shop}
spec:
  order: 10
  selector: app == 'db'
  ingress:
  - {action: Allow, protocol: TCP, source: {selector: app == 'web'}, destination: {ports: [8080]}}
  - {action: Deny, protocol: TCP, destination: {ports: [5432]}}
"""
