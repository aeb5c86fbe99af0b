// Package corefile edits the Corefile of a cluster's CoreDNS (the key
// Corefile of ConfigMap kube-system/coredns, as kubeadm installs it) the way
// straitctl join and leave do: it adds, replaces and removes one clearly
// marked server block that forwards the clusterset.local zone to Strait's DNS
// server, and leaves every other byte of the Corefile as it was.
//
// The functions are pure: text in, text out. Reading and writing the
// ConfigMap is the caller's (pkg/member).
package corefile

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

const (
	// Zone is the zone the marked block forwards: KEP-1645's clusterset
	// domain.
	Zone = "clusterset.local"
	// BeginMarker is the comment line that opens the marked block. A line
	// that starts with beginPrefix is taken for it, so that a hand-edited
	// explanation after the prefix still marks the block.
	BeginMarker = beginPrefix + ": added by straitctl join, removed by straitctl leave"
	// EndMarker is the comment line that closes the marked block.
	EndMarker = "# END strait " + Zone

	beginPrefix = "# BEGIN strait " + Zone
	// dnsPort is the port the cluster's CoreDNS serves pods on (kubeadm's
	// ".:53"), and so the port of the marked block's server: CoreDNS refuses
	// two server blocks of the same zone and port.
	dnsPort = "53"
)

// ErrMarkers says the Corefile's markers do not pair up (a BEGIN without its
// END, an END without its BEGIN, or a BEGIN inside a marked block): a hand
// edit this package will not guess about. The error names the line.
var ErrMarkers = errors.New("the strait markers of the Corefile do not pair up")

// ZoneServedError says the Corefile already has a server block of its own,
// outside the markers, for Zone on the port pods ask: adding the marked block
// would make CoreDNS refuse the Corefile (a zone and port served twice).
type ZoneServedError struct {
	// Line is the 1-based line of the server block's opening brace.
	Line int
	// Keys are the server block's keys as written ("clusterset.local:53").
	Keys []string
}

func (e *ZoneServedError) Error() string {
	return fmt.Sprintf("the Corefile already has a server block of its own for %s (line %d: %s)", Zone, e.Line, strings.Join(e.Keys, " "))
}

// Block returns the marked block that forwards Zone to servers (one address
// for a single-stack Service, two for a dual-stack one), each line ended
// with eol ("\n" or "\r\n"):
//
//	# BEGIN strait clusterset.local: added by straitctl join, removed by straitctl leave
//	clusterset.local:53 {
//	    forward . 10.96.0.20
//	}
//	# END strait clusterset.local
func Block(servers []netip.Addr, eol string) string {
	addrs := make([]string, len(servers))
	for i, s := range servers {
		addrs[i] = s.String()
	}
	return strings.Join([]string{
		BeginMarker,
		Zone + ":" + dnsPort + " {",
		"    forward . " + strings.Join(addrs, " "),
		"}",
		EndMarker,
	}, eol) + eol
}

// SetForward returns corefile with exactly one marked block, Block(servers),
// in it: the marked block replaced where it stands when it differs (a
// changed address, a hand edit between the markers), appended at the end
// when there is none, and corefile itself, byte for byte, when it already
// has that block. Further marked blocks are removed. The block takes the
// line endings of the rest of the Corefile; appended to a Corefile without a final line
// ending, it starts on a line of its own and lacks a final line ending too,
// so that RemoveForward gives back the Corefile as it was.
//
// Errors: no servers; ErrMarkers (wrapped); a *ZoneServedError when the
// Corefile serves Zone on port 53 in a server block of its own. On an error
// the Corefile is to be left as it is.
func SetForward(corefile string, servers []netip.Addr) (string, error) {
	if len(servers) == 0 {
		return corefile, errors.New("no server to forward " + Zone + " to")
	}
	blocks, err := markedBlocks(corefile)
	if err != nil {
		return corefile, err
	}
	if zs := zoneServed(mask(corefile, blocks)); zs != nil {
		return corefile, zs
	}
	without, at := cut(corefile, blocks)
	eol := lineEnding(without)
	block := Block(servers, eol)
	if at < len(without) {
		// Where the marked block stood, at the start of a line.
		return without[:at] + block + without[at:], nil
	}
	if without == "" || strings.HasSuffix(without, "\n") {
		return without + block, nil
	}
	return without + eol + strings.TrimSuffix(block, eol), nil
}

// RemoveForward returns corefile without its marked blocks, byte for byte
// as it was before SetForward added one (whatever was written between the
// markers since), and whether there was one. Errors: ErrMarkers (wrapped);
// corefile is then returned as it is.
func RemoveForward(corefile string) (string, bool, error) {
	blocks, err := markedBlocks(corefile)
	if err != nil {
		return corefile, false, err
	}
	without, _ := cut(corefile, blocks)
	return without, len(blocks) > 0, nil
}

// span is a range of bytes of a Corefile, [from, to).
type span struct{ from, to int }

// markedBlocks finds the marked blocks of corefile, in order: each from the
// start of its BEGIN line to the end of its END line, line ending included.
// An END line that ends the text without a line ending takes the line ending
// before its BEGIN line instead (SetForward put it there).
func markedBlocks(corefile string) ([]span, error) {
	var out []span
	begin := -1        // offset of the open block's BEGIN line
	beginCRLF := false // the BEGIN line ends with "\r\n"
	for lineNo, start := 1, 0; start < len(corefile); lineNo++ {
		end := strings.IndexByte(corefile[start:], '\n') + 1
		if end == 0 {
			end = len(corefile)
		} else {
			end += start
		}
		line := strings.TrimSpace(corefile[start:end])
		switch {
		case strings.HasPrefix(line, beginPrefix):
			if begin >= 0 {
				return nil, fmt.Errorf("line %d: a BEGIN inside a marked block: %w", lineNo, ErrMarkers)
			}
			begin, beginCRLF = start, strings.HasSuffix(corefile[start:end], "\r\n")
		case line == EndMarker:
			if begin < 0 {
				return nil, fmt.Errorf("line %d: an END without its BEGIN: %w", lineNo, ErrMarkers)
			}
			from := begin
			prev := 0 // where the previous block ended
			if len(out) > 0 {
				prev = out[len(out)-1].to
			}
			if end == len(corefile) && !strings.HasSuffix(corefile, "\n") && begin > prev {
				// The same line ending as the block's own lines.
				from--
				if beginCRLF && from > prev && corefile[from-1] == '\r' {
					from--
				}
			}
			out = append(out, span{from, end})
			begin = -1
		}
		start = end
	}
	if begin >= 0 {
		return nil, fmt.Errorf("a BEGIN without its END (%q): %w", EndMarker, ErrMarkers)
	}
	return out, nil
}

// cut returns corefile without blocks, and the offset in the rest where the
// first block was (len(rest) when there is none).
func cut(corefile string, blocks []span) (rest string, at int) {
	var b strings.Builder
	kept := 0
	at = -1
	for _, s := range blocks {
		b.WriteString(corefile[kept:s.from])
		if at < 0 {
			at = b.Len()
		}
		kept = s.to
	}
	b.WriteString(corefile[kept:])
	if at < 0 {
		at = b.Len()
	}
	return b.String(), at
}

// mask returns corefile with blocks blanked out (line breaks kept), so that
// what is found in the rest has the line numbers of corefile.
func mask(corefile string, blocks []span) string {
	b := []byte(corefile)
	for _, s := range blocks {
		for i := s.from; i < s.to; i++ {
			if b[i] != '\n' {
				b[i] = ' '
			}
		}
	}
	return string(b)
}

// lineEnding is the Corefile's line ending: "\r\n" when its first line ends
// so, else "\n".
func lineEnding(corefile string) string {
	if i := strings.IndexByte(corefile, '\n'); i > 0 && corefile[i-1] == '\r' {
		return "\r\n"
	}
	return "\n"
}

// zoneServed finds a server block of corefile whose keys include Zone on
// dnsPort (as "clusterset.local", "clusterset.local.:53", "dns://…"), or
// returns nil. It reads the Corefile as CoreDNS's parser does at the top
// level: tokens separated by white space, comments from a "#" that starts a
// token to the end of the line, quoted tokens, and a server block's keys as
// the tokens of the line (or the lines joined by trailing commas) before its
// "{", which may also open the next line. Snippets ("(name) {") have no zone keys and match nothing.
func zoneServed(corefile string) *ZoneServedError {
	var keys []string
	depth, line := 0, 1
	continued := false // the last key ended with a comma
	ended := false     // keys are complete: a new key starts a new list
	for i := 0; i < len(corefile); {
		c := corefile[i]
		switch {
		case c == '\n':
			if depth == 0 && !continued {
				// The keys end with the line; "{" may still follow on
				// the next one.
				ended = true
			}
			line++
			i++
			continue
		case c == ' ' || c == '\t' || c == '\r':
			i++
			continue
		case c == '#':
			for i < len(corefile) && corefile[i] != '\n' {
				i++
			}
			continue
		}
		// A token: quoted (to the closing quote, across lines), or up to
		// white space.
		start := i
		if c == '"' {
			for i++; i < len(corefile) && corefile[i] != '"'; i++ {
				if corefile[i] == '\\' {
					i++
				} else if corefile[i] == '\n' {
					line++
				}
			}
			i++
		} else {
			for i < len(corefile) && !strings.ContainsRune(" \t\r\n", rune(corefile[i])) {
				i++
			}
		}
		tok := corefile[start:min(i, len(corefile))]
		switch {
		case tok == "{":
			if depth == 0 && servesZone(keys) {
				return &ZoneServedError{Line: line, Keys: keys}
			}
			depth++
			keys, ended = nil, false
		case tok == "}":
			depth = max(0, depth-1)
			keys, ended = nil, false
		case depth == 0:
			if ended {
				keys, ended = nil, false
			}
			keys = append(keys, tok)
			continued = strings.HasSuffix(tok, ",")
		}
	}
	return nil
}

// servesZone reports whether server block keys include Zone on dnsPort
// (or on no port, which is CoreDNS's default, 53), over plain DNS.
func servesZone(keys []string) bool {
	for _, k := range keys {
		for _, k := range strings.Split(strings.Trim(k, `",`), ",") {
			k = strings.ToLower(strings.TrimSpace(k))
			if scheme, rest, ok := strings.Cut(k, "://"); ok {
				if scheme != "dns" {
					continue // another transport, on another port
				}
				k = rest
			}
			zone, port := k, ""
			if i := strings.LastIndexByte(k, ':'); i >= 0 {
				zone, port = k[:i], k[i+1:]
			}
			if strings.TrimSuffix(zone, ".") == Zone && (port == "" || port == dnsPort) {
				return true
			}
		}
	}
	return false
}
