"""The reference architecture's API service, as its repository ships it: Flask +
flask-restx, GET /default/ -> {"hostname", "ip"}, Swagger UI at /.

Used only as the anchor of `scripts/bench-api.sh` (geoha's ratio is printed against it).
The public-IP lookup happens once at start-up, as in the reference; offline it yields
"Error", exactly like the reference's except branch.
"""
import os
import socket
import urllib.request

from flask import Flask
from flask_restx import Api, Resource

app = Flask(__name__)
api = Api(app, version="1.0", title="Sample API", description="A sample API")
ns = api.namespace("default", description="default operations")

try:
    IP = urllib.request.urlopen("http://api.ipify.org", timeout=1).read().decode()
except Exception:  # noqa: BLE001 - mirrors the reference's blanket fallback
    IP = "Error"


@ns.route("/")
class Default(Resource):
    def get(self):
        return {"hostname": socket.gethostname(), "ip": IP}


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "8080")))
