# The pipeline image: TFX's own image (its TFX, Python, Beam SDK and Beam worker entry point)
# with this project installed, for Vertex AI Pipelines, Vertex AI Training and Dataflow workers.
#
#   make image IMAGE=REGION-docker.pkg.dev/PROJECT/REPO/cifar100-tfx    (docker build + push)
#
# The base image's tag is the TFX of requirements.lock (tests/test_dockerfile.py checks it);
# docs/vertex.md says how to build the TFX 1.21 one.
FROM gcr.io/tfx-oss-public/tfx:1.16.0

WORKDIR /pipeline

# The pinned tree first, in its own layer: a code change rebuilds only the layers below.
COPY requirements.lock ./
RUN python -m pip install --no-cache-dir -r requirements.lock

# Then the project itself (setup.py's packages and modules), without re-resolving anything.
COPY setup.py local_runner.py kubeflow_runner.py ./
COPY base/ base/
COPY datasources/ datasources/
COPY components/ components/
COPY modules/ modules/
COPY pipeline/ pipeline/
RUN python -m pip install --no-cache-dir --no-deps .

# No ENTRYPOINT or CMD of ours: TFX's image keeps Beam's worker boot (/opt/apache/beam/boot) as its
# entry point, which Dataflow runs (--sdk_container_image); Vertex AI Pipelines and Vertex AI
# Training run each component with the command the compiled pipeline and the job spec name.
