"""The portal benchmark's baseline: a Falcon hello-world, served by the gateway's own gunicorn
configuration (services/gateway/gunicorn.conf.py: workers, gthread, threads, access log)."""

import falcon


class Hello:
    def on_get(self, req, resp):
        resp.media = {"hello": "world"}


app = falcon.App()
app.add_route("/", Hello())
