package probe

import "encoding/json"

// The reports the test workload prints, one JSON line each (test/testpod:
// Report, PingReport, DNSReport, ThroughputReport, UDPSendReport,
// PMTUReport, NodeStateReport). Only the fields the commands read are
// here; the workload is the authority.

// ConnectReport is what "strait-testpod connect" prints.
type ConnectReport struct {
	OK     bool            `json:"ok"`
	Proto  string          `json:"proto"`
	Remote string          `json:"remote"`
	Bytes  int64           `json:"bytes"`
	RTT    string          `json:"rtt"`
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body"`
	Text   string          `json:"text"`
	Error  string          `json:"error"`
}

// Identity is the body of the workload's "GET /": which pod answered.
type Identity struct {
	Pod   string `json:"pod"`
	Node  string `json:"node"`
	PodIP string `json:"podIP"`
}

// PingReport is what "strait-testpod ping" prints at its end.
type PingReport struct {
	OK          bool     `json:"ok"`
	Sent        int64    `json:"sent"`
	Received    int64    `json:"received"`
	Lost        int64    `json:"lost"`
	RTTP50Ms    float64  `json:"rttP50Ms"`
	RTTP99Ms    float64  `json:"rttP99Ms"`
	RTTMaxMs    float64  `json:"rttMaxMs"`
	LastReplyMs *float64 `json:"lastReplyMs"`
	MaxGapMs    float64  `json:"maxGapMs"`
	DurationMs  float64  `json:"durationMs"`
	Error       string   `json:"error"`
}

// DNSReport is what "strait-testpod dns" prints.
type DNSReport struct {
	OK        bool     `json:"ok"`
	Addresses []string `json:"addresses"`
	NotFound  bool     `json:"notFound"`
	Error     string   `json:"error"`
}

// ThroughputReport is what "strait-testpod throughput" prints.
type ThroughputReport struct {
	OK      bool    `json:"ok"`
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
	Gbps    float64 `json:"gbps"`
	Error   string  `json:"error"`
}

// UDPSendReport is what "strait-testpod udp-send" prints.
type UDPSendReport struct {
	OK       bool   `json:"ok"`
	Reply    string `json:"reply"`
	Attempts int    `json:"attempts"`
	RTT      string `json:"rtt"`
	Error    string `json:"error"`
}

// PMTUReport is what "strait-testpod pmtu" prints.
type PMTUReport struct {
	OK        bool   `json:"ok"`
	Max       int    `json:"max"`
	Largest   int    `json:"largest"`
	Smallest  int    `json:"smallest"`
	LocalMTU  int    `json:"localMTU"`
	Datagrams int    `json:"datagrams"`
	Error     string `json:"error"`
}

// NodeStateReport is what "strait-testpod node-state" prints: what of
// Strait's a node holds, one line each (nodenet.Leftovers,
// nodenet.WireGuardSockets).
type NodeStateReport struct {
	OK    bool     `json:"ok"`
	Found []string `json:"found"`
	Error string   `json:"error"`
}
