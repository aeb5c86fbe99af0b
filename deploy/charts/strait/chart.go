// Package strait embeds Strait's Helm chart, the one source of the objects
// of a member cluster: deploy/manifests renders it for straitctl join and
// leave through Helm's Go SDK, helm install installs it as a directory, and
// package crds reads its crds/ folder. This file is not part of the chart
// (.helmignore).
package strait

import "embed"

// FS holds the chart's files, with paths relative to the chart's folder
// (Chart.yaml, values.yaml, templates/_helpers.tpl, crds/..., files/...).
// "all:" keeps templates/_helpers.tpl, which go:embed would skip for its
// leading underscore.
//
//go:embed Chart.yaml values.yaml values.schema.json .helmignore all:templates crds files
var FS embed.FS
