// Package monitoring holds what Strait gives Prometheus and Grafana:
// strait-alerts.yaml, the alerting rules (a Prometheus rules file, the spec
// of a PrometheusRule), with their promtool unit tests in
// strait-alerts_test.yaml, and strait-dashboard.json, a Grafana dashboard.
// Both use only metrics that some component registers; the package's tests
// check that, and run promtool over the rules. docs/metrics.md lists the
// metrics and the alerts.
package monitoring
