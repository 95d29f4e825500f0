FROM python:3.7
RUN pip install tensorflow-neuron
ENV NEURON_RTD_ADDRESS=unix:/sock/neuron.sock
CMD ["python", "serve.py"]
