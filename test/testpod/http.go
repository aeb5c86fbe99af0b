package testpod

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
)

// Identity is who the pod is. Test manifests pass it in through the
// downward API as environment variables.
type Identity struct {
	Hostname  string
	Pod       string
	Namespace string
	Node      string
	PodIP     string
}

// IdentityFromEnv returns the hostname and the variables POD_NAME,
// POD_NAMESPACE, NODE_NAME and POD_IP; what is unset stays empty.
func IdentityFromEnv() Identity {
	host, _ := os.Hostname()
	return Identity{
		Hostname:  host,
		Pod:       os.Getenv("POD_NAME"),
		Namespace: os.Getenv("POD_NAMESPACE"),
		Node:      os.Getenv("NODE_NAME"),
		PodIP:     os.Getenv("POD_IP"),
	}
}

// Info is the JSON body of GET /: who answered, and whom it saw asking.
type Info struct {
	Hostname  string `json:"hostname"`
	Pod       string `json:"pod"`
	Namespace string `json:"namespace"`
	Node      string `json:"node"`
	PodIP     string `json:"podIP"`
	// Client is the remote address of the request as the server saw it,
	// after any NAT on the way: the address a test checks for source-IP
	// preservation.
	Client string `json:"client"`
	Path   string `json:"path"`
}

// NewHandler returns the HTTP side of serve:
//
//	GET /                   Info as JSON
//	GET /healthz            200 "ok", for readiness and liveness probes
//	GET /bytes?n=N&seed=S   N bytes of NewStream(S), with Content-Length and
//	                        X-Sha256 (S defaults to DefaultSeed)
//	GET /status/CODE        an empty answer with status CODE (200-599)
//
// and 404 to anything else.
func NewHandler(id Identity) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(Info{
			Hostname:  id.Hostname,
			Pod:       id.Pod,
			Namespace: id.Namespace,
			Node:      id.Node,
			PodIP:     id.PodIP,
			Client:    r.RemoteAddr,
			Path:      r.URL.Path,
		})
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok")
	})
	mux.HandleFunc("GET /bytes", serveBytes)
	mux.HandleFunc("GET /status/{code}", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.PathValue("code"))
		if err != nil || code < 200 || code > 599 {
			http.Error(w, fmt.Sprintf("invalid status %q: want 200 to 599", r.PathValue("code")), http.StatusBadRequest)
			return
		}
		w.WriteHeader(code)
	})
	mux.HandleFunc("/", http.NotFound)
	return mux
}

// serveBytes answers /bytes?n=N&seed=S. The checksum goes in a header, so
// it has to be known before the body: the stream is generated once to hash
// it and once more to send it, which costs CPU but no memory.
func serveBytes(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	n, err := strconv.ParseInt(q.Get("n"), 10, 64)
	if err != nil || n < 0 || n > MaxStreamBytes {
		http.Error(w, fmt.Sprintf("invalid n %q: want 0 to %d", q.Get("n"), MaxStreamBytes), http.StatusBadRequest)
		return
	}
	seed := uint64(DefaultSeed)
	if s := q.Get("seed"); s != "" {
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			http.Error(w, fmt.Sprintf("invalid seed %q: want an unsigned 64-bit number", s), http.StatusBadRequest)
			return
		}
	}
	sum, err := streamSHA256(r.Context(), n, seed)
	if err != nil {
		return // the client went away
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	h.Set("X-Sha256", sum)
	if r.Method == http.MethodHead {
		return
	}
	_, _ = io.CopyN(w, NewStream(seed), n)
}
