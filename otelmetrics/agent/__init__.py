"""otelmetrics-agent: host metrics of Linux devices (Raspberry Pi, gateways) over OpenTelemetry."""
