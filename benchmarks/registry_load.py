"""Time ``router.load`` on a large generated registry: 200 services, 5,000 task types, 20 included files.

Run: ``python benchmarks/registry_load.py`` (options: --services, --tasks, --repeat). Prints the median of the
timed loads in milliseconds. Task payload schemas are varied (each distinct, so no schema check is shared
across tasks), a tenth of them are ``$ref`` files, and there are 50 cron entries with payloads.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import router


def generate(root: str, services: int, tasks: int, files: int) -> str:
    """Write the registry under ``root``; return the path of its root file."""
    os.makedirs(os.path.join(root, "services.d"))
    os.makedirs(os.path.join(root, "schemas"))
    per_service = tasks // services
    parts: list[list[str]] = [[] for _ in range(files)]
    crons: list[str] = []
    for s in range(services):
        lines = parts[s % files]
        lines += [f"  svc{s:03d}:", f'    app: "fleet.svc{s:03d}:app"', "    concurrency: 8",
                  "    priority: " + ("strict" if s % 3 == 0 else "weighted"),
                  "    queues:", "      critical: {weight: 6}", "      default: {weight: 3}", "      low: {weight: 1}",
                  "    tasks:"]
        for t in range(per_service):
            name = f"svc{s:03d}.task{t:02d}"
            queue = ("critical", "default", "low")[t % 3]
            lines += [f"      {name}:", f"        queue: {queue}", f"        timeout_s: {30 + t}",
                      f"        max_retry: {t % 10}"]
            if t % 10 == 0:
                schema = {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"},
                          f"field_{s}_{t}": {"type": "string", "maxLength": 100 + t}}}
                with open(os.path.join(root, "schemas", f"{name}.json"), "w") as fh:
                    json.dump(schema, fh)
                lines.append(f'        payload: {{$ref: "../schemas/{name}.json"}}')
            else:
                lines += ["        payload:", "          type: object", "          required: [user_id]",
                          "          properties:", "            user_id: {type: integer, minimum: 1}",
                          f"            note_{s}_{t}: {{type: string, maxLength: {50 + t}}}",
                          "            tags: {type: array, items: {type: string}}",
                          "          additionalProperties: false"]
        if s % 4 == 0:
            crons += [f"  - name: cron-{s:03d}", f"    task: svc{s:03d}.task01", '    spec: "*/15 * * * *"',
                      "    timezone: Europe/Paris", "    payload: {user_id: 1}"]
    includes = []
    for i, lines in enumerate(parts):
        name = f"services.d/team{i:02d}.yaml"
        includes.append(f"  - {name}")
        with open(os.path.join(root, name), "w") as fh:
            fh.write("services:\n" + "\n".join(lines) + "\n")
    path = os.path.join(root, "services.yaml")
    with open(path, "w") as fh:
        fh.write("version: 1\nredis: {url: \"${REDIS_URL:-redis://localhost:6379/0}\"}\n"
                 "defaults: {max_retry: 25, timeout_s: 1800}\ninclude:\n" + "\n".join(includes) +
                 "\ncron:\n" + "\n".join(crons) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        path = generate(root, args.services, args.tasks, args.files)
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)
        timings, cpu = [], []
        for _ in range(args.repeat):
            start, start_cpu = time.perf_counter(), time.process_time()
            registry = router.load(path, env={})
            timings.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        assert len(registry.tasks) == args.tasks and len(registry.services) == args.services
        median_ms = statistics.median(timings) * 1000
        print(f"router.load: {args.services} services, {len(registry.tasks)} task types, {len(registry.cron)} cron, "
              f"{size / 1024:.0f} KiB in {args.files + 1} files: median {median_ms:.0f} ms of {args.repeat} "
              f"(min {min(timings) * 1000:.0f}, max {max(timings) * 1000:.0f}; median CPU "
              f"{statistics.median(cpu) * 1000:.0f} ms); python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
