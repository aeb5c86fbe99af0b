package broker

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"k8s.io/client-go/rest"
)

// Info is the join file that deploy-broker writes (broker-info.strait). It
// holds the enrolment credential: whoever has the file can join clusters to
// the broker, read every member's records, and remove members. Hand it only
// to those allowed to join clusters; members keep a narrower credential of
// their own, made at join.
type Info struct {
	// APIServer is the broker apiserver's URL as member clusters reach it.
	APIServer string `json:"apiServer"`
	// CABundle is the PEM of the CA that signed the apiserver's certificate.
	CABundle []byte `json:"caBundle"`
	// Namespace is the broker namespace.
	Namespace string `json:"namespace"`
	// Token is the enrolment service account's token.
	Token string `json:"token"`
	// GlobalnetCIDR is the Globalnet pool clusters' global CIDRs are
	// allotted from, as Deploy recorded it (the broker's ConfigMap
	// GlobalnetConfigMap holds the pool join allots from). Empty in files
	// from brokers deployed before Globalnet.
	GlobalnetCIDR string `json:"globalnetCIDR,omitempty"`
}

// infoVersion marks the file format, so that a future straitctl can tell.
const infoVersion = "strait.dev/broker-info/v1"

type infoFile struct {
	Version string `json:"version"`
	Info
}

// WriteInfo writes the join file with mode 0600: it holds a secret.
func WriteInfo(path string, info *Info) error {
	data, err := json.MarshalIndent(infoFile{Version: infoVersion, Info: *info}, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ReadInfo reads and checks a join file.
func ReadInfo(path string) (*Info, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read broker info: %w", err)
	}
	var f infoFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%s is not a broker info file (written by straitctl deploy-broker): %w", path, err)
	}
	if f.Version != infoVersion {
		return nil, fmt.Errorf("%s is not a broker info file: version %q, want %q", path, f.Version, infoVersion)
	}
	if err := f.Info.validate(); err != nil {
		return nil, fmt.Errorf("%s %w", path, err)
	}
	return &f.Info, nil
}

// validate checks that every field a join needs is there. Its error is one
// line: "is incomplete: no apiServer, token (...)", or a bad globalnetCIDR.
func (i *Info) validate() error {
	var missing []string
	if i.APIServer == "" {
		missing = append(missing, "apiServer")
	}
	if len(i.CABundle) == 0 {
		missing = append(missing, "caBundle")
	}
	if i.Namespace == "" {
		missing = append(missing, "namespace")
	}
	if i.Token == "" {
		missing = append(missing, "token")
	}
	if len(missing) > 0 {
		return fmt.Errorf("is incomplete: no %s (write it again with straitctl deploy-broker)", strings.Join(missing, ", "))
	}
	if i.GlobalnetCIDR != "" {
		p, err := netip.ParsePrefix(i.GlobalnetCIDR)
		if err == nil {
			err = ValidateGlobalnetPool(p)
		}
		if err != nil {
			return fmt.Errorf("has a bad globalnetCIDR %q: %v", i.GlobalnetCIDR, err)
		}
	}
	return nil
}

// RESTConfig is a client configuration for the broker with the given token.
func (i *Info) RESTConfig(token string) *rest.Config {
	return &rest.Config{
		Host:            i.APIServer,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: i.CABundle},
	}
}
