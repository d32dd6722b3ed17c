#!/usr/bin/env python3
"""Renders deploy/k8s for another size: N agents and a target of T connections.

    python3 deploy/k8s/render.py --agents 8 --conns 2000000 [--image c1m:0.1.0] [--url ws://…/]
        > c1m.yaml && kubectl apply -f c1m.yaml

Sets the agents Job's completions and parallelism, the coordinator's --conns and
--expect-agents (and --url, the image), and each agent's memory request from the largest share
the coordinator will give it (the same split c1m makes: T // N, and one more for the first
T % N agents) at 12 KiB per connection plus 256 MiB. --json prints the documents as a JSON
list (for the tests). Needs PyYAML (pip install pyyaml; kubernetes-validate brings it).
"""
import argparse
import json
import os
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
FILES = ["namespace.yaml", "secret.yaml", "server.yaml", "agents.yaml", "coordinator.yaml"]
KIB_PER_CONN = 12
BASE_MIB = 256


def set_flag(args, flag, value):
    """Replaces the value after `flag` in a container's args."""
    i = args.index(flag)
    args[i + 1] = value


def render(agents, conns, image=None, url=None):
    docs = []
    for name in FILES:
        with open(os.path.join(HERE, name)) as f:
            docs.extend(d for d in yaml.safe_load_all(f) if d)
    largest = conns // agents + (1 if conns % agents else 0)
    memory = f"{(largest * KIB_PER_CONN) // 1024 + BASE_MIB}Mi"
    for d in docs:
        pod = d.get("spec", {}).get("template", {}).get("spec", {})
        for c in pod.get("containers", []):
            if image:
                c["image"] = image
        name = d["metadata"]["name"]
        if d["kind"] == "Job" and name == "c1m-agents":
            d["spec"]["completions"] = agents
            d["spec"]["parallelism"] = agents
            pod["containers"][0]["resources"]["requests"]["memory"] = memory
        if d["kind"] == "Job" and name == "c1m-coordinator":
            args = pod["containers"][0]["args"]
            set_flag(args, "--conns", str(conns))
            set_flag(args, "--expect-agents", str(agents))
            if url:
                set_flag(args, "--url", url)
    return docs


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, required=True)
    p.add_argument("--conns", type=int, required=True)
    p.add_argument("--image")
    p.add_argument("--url")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if a.agents < 1 or a.conns < 0:
        sys.exit("render.py: --agents must be 1 or more and --conns 0 or more")
    docs = render(a.agents, a.conns, a.image, a.url)
    if a.json:
        json.dump(docs, sys.stdout)
    else:
        yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
