package node

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Container logs are kept as the CRI runtimes keep them (the format the
// kubelet reads, KEP "CRI: container log path and format"): one file per
// container start at <podDir>/logs/<container>/<attempt>.log, attempt 0 for
// the first start, each record a line
//
//	<RFC 3339 time, nanoseconds> <stdout|stderr> <F|P> <content>
//
// where P marks a partial line (a piece of a line longer than
// maxLogLineBytes) that the next record continues and F a full one.
const maxLogLineBytes = 16 * 1024

// containerLogPath is the CRI log file of one start of a container.
func containerLogPath(podDir, container string, attempt int32) string {
	return filepath.Join(podDir, "logs", container, strconv.Itoa(int(attempt))+".log")
}

// logAttempt is the attempt number the next start of c gets: its restart
// count, plus one once it has exited before (start counts the restart after
// opening the log).
func logAttempt(c *containerState) int32 {
	if c.lastExit != nil {
		return c.restarts + 1
	}
	return c.restarts
}

// containerLog writes one container start's stdout and stderr to its CRI
// log file.
type containerLog struct {
	// Stdout and Stderr are the write ends of pipes to give the process.
	Stdout, Stderr *os.File
	readers        []*os.File
	file           *os.File
	mu             sync.Mutex // serializes records
	wg             sync.WaitGroup
}

// openContainerLog creates <podDir>/logs/<container>/<attempt>.log and the
// pipes for the process's stdout and stderr; goroutines stamp each line as
// it arrives. Call Started once the process has started (or failed to) and
// Finished after it has been waited for. Logs of attempts older than the
// previous one are removed: the kubelet keeps the current and previous only.
func openContainerLog(podDir, container string, attempt int32) (*containerLog, error) {
	dir := filepath.Join(podDir, "logs", container)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for old := attempt - 2; old >= 0; old-- {
		if err := os.Remove(containerLogPath(podDir, container, old)); errors.Is(err, os.ErrNotExist) {
			break
		}
	}
	f, err := os.OpenFile(containerLogPath(podDir, container, attempt), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	l := &containerLog{file: f}
	for _, stream := range []string{"stdout", "stderr"} {
		r, w, err := os.Pipe()
		if err != nil {
			l.Started()
			l.Finished()
			return nil, err
		}
		l.readers = append(l.readers, r)
		if stream == "stdout" {
			l.Stdout = w
		} else {
			l.Stderr = w
		}
		l.wg.Add(1)
		go l.copy(stream, r)
	}
	return l, nil
}

func (l *containerLog) copy(stream string, r *os.File) {
	defer l.wg.Done()
	br := bufio.NewReaderSize(r, maxLogLineBytes)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			tag := "P"
			if line[len(line)-1] == '\n' {
				line, tag = line[:len(line)-1], "F"
			} else if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
				tag = "F" // the last line, without its newline
			}
			l.mu.Lock()
			_, _ = fmt.Fprintf(l.file, "%s %s %s %s\n", time.Now().Format(time.RFC3339Nano), stream, tag, line)
			l.mu.Unlock()
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// Started closes the agent's copies of the pipes' write ends, so that the
// readers see the end of output when the process (and its children) exit.
func (l *containerLog) Started() {
	for _, w := range []*os.File{l.Stdout, l.Stderr} {
		if w != nil {
			w.Close()
		}
	}
}

// Finished waits until all output is written, then closes the file. A
// child the process left running may hold the pipes open: after
// logDrainTimeout the rest of its output is dropped, so that a container's
// exit is never held up by its log.
func (l *containerLog) Finished() {
	drained := make(chan struct{})
	go func() { l.wg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(logDrainTimeout):
	}
	for _, r := range l.readers {
		r.Close()
	}
	<-drained
	l.file.Close()
}

const (
	// logDrainTimeout bounds the wait for a container's output after it
	// exits: long enough for pipes to drain, short enough not to delay
	// restarts noticeably.
	logDrainTimeout = 2 * time.Second
	// logFollowPoll is how often a follow looks for more lines; a tenth of a
	// second keeps "kubectl logs -f" feeling live at little cost.
	logFollowPoll = 100 * time.Millisecond
	// logFinalReadDelay is how long a follow waits, after its container
	// stopped, before the last read: the writer may still be draining pipes.
	logFinalReadDelay = 300 * time.Millisecond
)

// logRecord is one parsed CRI log line.
type logRecord struct {
	time    time.Time
	stream  string
	partial bool
	content []byte
}

func parseLogRecord(line []byte) (logRecord, error) {
	fields := bytes.SplitN(line, []byte{' '}, 4)
	if len(fields) < 3 {
		return logRecord{}, fmt.Errorf("not a CRI log line: %q", line)
	}
	t, err := time.Parse(time.RFC3339Nano, string(fields[0]))
	if err != nil {
		return logRecord{}, fmt.Errorf("CRI log line time: %w", err)
	}
	rec := logRecord{time: t, stream: string(fields[1]), partial: string(fields[2]) == "P"}
	if len(fields) == 4 {
		rec.content = fields[3]
	}
	return rec, nil
}

// LogOptions selects and shapes container log output; the fields mean what
// the same-named ones of corev1.PodLogOptions mean.
type LogOptions struct {
	// Previous reads the attempt before the latest one.
	Previous bool
	// Follow keeps streaming while Running reports the container running,
	// and until the file is drained after that.
	Follow bool
	// TailLines, when >= 0, keeps only the last TailLines records (a line
	// longer than 16 KiB counts once per 16 KiB); -1 keeps all.
	TailLines int64
	// Since drops records older than this time (zero: keep all).
	Since time.Time
	// Timestamps prefixes each line with its RFC 3339 time and a space.
	Timestamps bool
	// LimitBytes, when > 0, stops after that many bytes of output.
	LimitBytes int64
	// Stream, when "stdout" or "stderr", keeps only that stream's records
	// (PodLogOptions.Stream "Stdout"/"Stderr"); empty keeps both.
	Stream string
	// Running reports whether the container whose latest log is read still
	// runs (Follow only); nil means it does not.
	Running func() bool
}

// ErrNoPreviousLog is returned when LogOptions.Previous asks for an attempt
// that does not exist; the kubelet answers such a request with 400.
var ErrNoPreviousLog = errors.New("previous terminated container not found")

// latestAttempt is the highest attempt of a container with a log file, or -1.
func latestAttempt(podDir, container string) int32 {
	entries, _ := os.ReadDir(filepath.Join(podDir, "logs", container))
	var attempts []int
	for _, e := range entries {
		if n, err := strconv.Atoi(strings.TrimSuffix(e.Name(), ".log")); err == nil && strings.HasSuffix(e.Name(), ".log") {
			attempts = append(attempts, n)
		}
	}
	if len(attempts) == 0 {
		return -1
	}
	sort.Ints(attempts)
	return int32(attempts[len(attempts)-1])
}

// WriteContainerLog writes the content of a container's CRI log (the latest
// attempt's, or the one before with Previous) to w as kubectl logs shows it.
// It returns os.ErrNotExist when the container has no log and
// ErrNoPreviousLog as above; with Follow it returns when ctx ends or the
// container stopped and its log is drained.
func WriteContainerLog(ctx context.Context, w io.Writer, podDir, container string, opts LogOptions) error {
	attempt := latestAttempt(podDir, container)
	if attempt < 0 {
		return fmt.Errorf("container %q has no log in %s: %w", container, podDir, os.ErrNotExist)
	}
	if opts.Previous {
		if attempt == 0 {
			return ErrNoPreviousLog
		}
		attempt--
		opts.Follow = false
	}
	path := containerLogPath(podDir, container, attempt)
	f, err := os.Open(path)
	if err != nil {
		if opts.Previous && errors.Is(err, os.ErrNotExist) {
			return ErrNoPreviousLog
		}
		return err
	}
	defer f.Close()
	if opts.TailLines >= 0 {
		// Start where the last TailLines records begin.
		off, err := tailOffset(f, opts.TailLines)
		if err != nil {
			return err
		}
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return err
		}
	}
	written := int64(0)
	emit := func(b []byte) bool {
		if opts.LimitBytes > 0 && written+int64(len(b)) > opts.LimitBytes {
			b = b[:opts.LimitBytes-written]
		}
		n, err := w.Write(b)
		written += int64(n)
		if fl, ok := w.(interface{ Flush() }); ok {
			fl.Flush()
		}
		return err == nil && (opts.LimitBytes <= 0 || written < opts.LimitBytes)
	}
	br := bufio.NewReader(f)
	var pending []byte // a line read up to EOF without its newline yet
	stopping := false
	for {
		chunk, err := br.ReadBytes('\n')
		pending = append(pending, chunk...)
		if err == nil {
			line := pending[:len(pending)-1]
			pending = nil
			rec, perr := parseLogRecord(line)
			if perr != nil {
				continue
			}
			if !opts.Since.IsZero() && rec.time.Before(opts.Since) || opts.Stream != "" && rec.stream != opts.Stream {
				continue
			}
			var out []byte
			if opts.Timestamps {
				out = append(out, rec.time.Format(time.RFC3339Nano)...)
				out = append(out, ' ')
			}
			out = append(out, rec.content...)
			if !rec.partial {
				out = append(out, '\n')
			}
			if !emit(out) {
				return nil
			}
			continue
		}
		if !errors.Is(err, io.EOF) {
			return err
		}
		if !opts.Follow || stopping {
			return nil
		}
		if opts.Running == nil || !opts.Running() || latestAttempt(podDir, container) != attempt {
			// One last read: the writer may still be draining the pipes.
			stopping = true
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(logFinalReadDelay):
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(logFollowPoll):
		}
	}
}

// tailOffset is the offset of the start of the last n lines of f.
func tailOffset(f *os.File, n int64) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := st.Size()
	if n == 0 {
		return size, nil
	}
	const block = 64 * 1024
	buf := make([]byte, block)
	end := size
	// Skip a trailing newline: it ends the last line rather than starting one.
	lines := int64(0)
	for pos := size; pos > 0; {
		start := max(pos-block, 0)
		m, err := f.ReadAt(buf[:pos-start], start)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		for i := m - 1; i >= 0; i-- {
			if buf[i] != '\n' || start+int64(i) == end-1 {
				continue
			}
			lines++
			if lines == n {
				return start + int64(i) + 1, nil
			}
		}
		pos = start
	}
	return 0, nil
}
