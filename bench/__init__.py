"""`make bench`: every benchmark against a baseline measured side by side in the same run.

`python -m bench` starts its own system (bench/stack.py), runs the benchmarks in order,
prints a table and writes bench/results/results.json, report.md and results.png:

1. rpc_overhead  nameko RPC through the gateway's pool vs a raw AMQP round trip
2. portal        dashboard and invoice list for 50 distinct signed-in clients (wrk) vs a hello-world and vs
                 the same portal as a monolith; CPU per page; auth RPCs per page; parts of the dashboard
3. webhooks      1,000 Stripe webhooks to Paid vs the broker's raw publish->consume rate; the same through
                 the monolith, beside it
4. pdf           cold render vs cached fetch; a cached PDF through the gateway vs a hello-world
5. scaleout      billing with two replicas vs one
6. memory        RSS of each service idle vs under the portal load (sampled during 2)
"""
