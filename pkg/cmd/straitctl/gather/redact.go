package gather

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"regexp"
	"sort"

	corev1 "k8s.io/api/core/v1"
)

// minSecretLen is the shortest Secret value the Redactor hunts for in
// other files: shorter values ("true", a port) are no credential and would
// blank out ordinary text.
const minSecretLen = 8

// Redacted stands in for what was removed.
const Redacted = "<redacted>"

var (
	// privateKeyPEM is any PEM block of a private key.
	privateKeyPEM = regexp.MustCompile(`(?s)-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?-----END [A-Z0-9 ]*PRIVATE KEY-----`)
	// jwt is a JSON Web Token, the shape of service-account tokens.
	jwt = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+`)
	// bearer is an Authorization header's credential.
	bearer = regexp.MustCompile(`(?i)(authorization:\s*bearer\s+)\S+`)
)

// Redactor removes credentials from everything written to the archive:
// the values of every Secret gather has read (as they are and in base64,
// as a last-applied-configuration annotation would hold them), PEM private
// keys, JSON Web Tokens and bearer headers.
type Redactor struct {
	values [][]byte // longest first, so a value inside another goes too
}

// publicKeys are Secret keys whose values are no credential and appear
// everywhere else as names (the broker Secret's apiServer and namespace, a
// service-account token Secret's namespace, CA certificates): hunting for
// them would blank out every mention of the namespace. In the Secrets
// themselves they are redacted all the same.
var publicKeys = map[string]bool{"apiServer": true, "namespace": true, "ca.crt": true, "publicKey": true}

// Learn adds the values of s to what is redacted.
func (r *Redactor) Learn(s *corev1.Secret) {
	for k, v := range s.Data {
		if !publicKeys[k] {
			r.add(v)
		}
	}
	for k, v := range s.StringData {
		if !publicKeys[k] {
			r.add([]byte(v))
		}
	}
}

func (r *Redactor) add(v []byte) {
	v = bytes.TrimSpace(v)
	if len(v) < minSecretLen {
		return
	}
	r.values = append(r.values, bytes.Clone(v), []byte(base64.StdEncoding.EncodeToString(v)))
	// A multi-line value (a PEM bundle) may show up a line at a time.
	for _, line := range bytes.Split(v, []byte("\n")) {
		if line = bytes.TrimSpace(line); len(line) >= minSecretLen*4 {
			r.values = append(r.values, bytes.Clone(line))
		}
	}
	sort.Slice(r.values, func(i, j int) bool { return len(r.values[i]) > len(r.values[j]) })
}

// Redact returns data without credentials.
func (r *Redactor) Redact(data []byte) []byte {
	for _, v := range r.values {
		data = bytes.ReplaceAll(data, v, []byte(Redacted))
	}
	data = privateKeyPEM.ReplaceAll(data, []byte(Redacted))
	data = jwt.ReplaceAll(data, []byte(Redacted))
	return bearer.ReplaceAll(data, []byte("${1}"+Redacted))
}

// RedactSecret returns a copy of s that keeps its metadata, type and data
// keys; each value becomes "<redacted, N bytes>". The last-applied
// configuration annotation, which holds the data, goes.
func RedactSecret(s *corev1.Secret) *corev1.Secret {
	out := s.DeepCopy()
	out.ManagedFields = nil
	delete(out.Annotations, corev1.LastAppliedConfigAnnotation)
	out.Data = nil
	out.StringData = nil
	if len(s.Data)+len(s.StringData) > 0 {
		out.StringData = map[string]string{}
	}
	for k, v := range s.Data {
		out.StringData[k] = fmt.Sprintf("%s, %d bytes", Redacted, len(v))
	}
	for k, v := range s.StringData {
		out.StringData[k] = fmt.Sprintf("%s, %d bytes", Redacted, len(v))
	}
	return out
}
