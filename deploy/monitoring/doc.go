// Package monitoring tests what Strait gives Prometheus and Grafana, which
// ships in the Helm chart (deploy/charts/strait/files, installed as a
// PrometheusRule and a dashboard ConfigMap when the chart's values enable
// them): strait-alerts.yaml, the alerting rules (a Prometheus rules file, the
// spec of a PrometheusRule), with their promtool unit tests here in
// strait-alerts_test.yaml, and strait-dashboard.json, a Grafana dashboard.
// Both use only metrics that some component registers; the package's tests
// check that, and run promtool over the rules. docs/metrics.md lists the
// metrics and the alerts.
package monitoring
