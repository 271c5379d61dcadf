package bridge

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"chorus/media/recfile"
)

// Limits on recordings, so that an API user cannot fill the disk: a
// recording's length is bounded (recordingMaxDuration, Catapult's call
// field), each user's recording files on disk are bounded (a quota in
// bytes, Config.RecordingQuota), and no recording starts on a filesystem
// that is nearly full (Config.RecordingMinFree). None of it costs the
// tick anything: the writer counts what it writes and checks the limits
// after each drain of the tap.

// Bounds of recordingMaxDuration. Catapult documents the field on a call
// but not its default; one hour is the default the API has long been
// known by, and four hours the most we take.
const (
	DefaultRecordingMaxDuration = time.Hour
	MaxRecordingMaxDuration     = 4 * time.Hour
)

// Errors of the recording limits.
var (
	ErrRecordingQuota    = errors.New("the user's recording quota is used up")
	ErrRecordingDiskFull = errors.New("the recordings directory's filesystem is nearly full")
)

// recUsage counts each user's recording bytes on disk: the files being
// written (every byte the writer writes), those ended, and those of an
// earlier run adopted at start (AdoptRecordingFiles). A file's bytes are
// given back when it is removed (DELETE, retention). It is touched by
// writers and the API, never by the tick.
type recUsage struct {
	mu    sync.Mutex
	users map[string]int64
	files map[string]*fileUse // by media name
}

// fileUse is one counted file: its owner and the bytes counted for it.
type fileUse struct {
	user  string
	bytes int64
}

func newRecUsage() recUsage {
	return recUsage{users: map[string]int64{}, files: map[string]*fileUse{}}
}

// track starts counting the file name of user with bytes already on disk
// (0 for a new one). A file counted already is left as it is.
func (u *recUsage) track(name, user string, bytes int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, ok := u.files[name]; ok {
		return
	}
	u.files[name] = &fileUse{user: user, bytes: bytes}
	u.users[user] += bytes
}

// grow counts n more bytes written to the file name, if it is still
// counted (not removed meanwhile).
func (u *recUsage) grow(name string, n int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if f := u.files[name]; f != nil {
		f.bytes += n
		u.users[f.user] += n
	}
}

// release gives back the bytes of the removed file name.
func (u *recUsage) release(name string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	f := u.files[name]
	if f == nil {
		return
	}
	delete(u.files, name)
	if u.users[f.user] -= f.bytes; u.users[f.user] <= 0 {
		delete(u.users, f.user)
	}
}

// usedTotal returns the bytes of every user's recording files on disk.
func (u *recUsage) usedTotal() int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	var n int64
	for _, b := range u.users {
		n += b
	}
	return n
}

// used returns the bytes of user's recording files on disk.
func (u *recUsage) used(user string) int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.users[user]
}

// RecordingBytes returns the bytes of userID's recording files on disk,
// as counted against Config.RecordingQuota.
func (b *Bridge) RecordingBytes(userID string) int64 { return b.recUse.used(userID) }

// RecordingBytesTotal returns the bytes of every user's recording files on
// disk, as counted against the quotas.
func (b *Bridge) RecordingBytesTotal() int64 { return b.recUse.usedTotal() }

// CanRecord says whether a recording of userID may start now: nil, or
// ErrRecordingDisabled, ErrRecordingQuota (the user's files fill the
// quota) or ErrRecordingDiskFull, wrapped with the figures. The API asks
// before it creates what it is asked to record.
func (b *Bridge) CanRecord(userID string) error {
	if b.cfg.RecordingsDir == "" {
		return ErrRecordingDisabled
	}
	if q := b.cfg.RecordingQuota; q > 0 {
		if used := b.recUse.used(userID); used >= q {
			b.stats.RecordingsRefused.Add(1)
			return fmt.Errorf("%w: %d bytes of recordings on disk, the quota is %d", ErrRecordingQuota, used, q)
		}
	}
	if min := b.cfg.RecordingMinFree; min > 0 {
		if free, _, ok := DiskSpace(b.cfg.RecordingsDir); ok && free < min {
			b.stats.RecordingsRefused.Add(1)
			return fmt.Errorf("%w: %d bytes free, a recording needs %d", ErrRecordingDiskFull, free, min)
		}
	}
	return nil
}

// overQuota returns why r must end because its user's files crossed the
// quota, or nil.
func (r *Recording) overQuota() error {
	q := r.b.cfg.RecordingQuota
	if q <= 0 {
		return nil
	}
	if used := r.b.recUse.used(r.userID); used > q {
		return fmt.Errorf("%w: %d bytes of recordings on disk, the quota is %d", ErrRecordingQuota, used, q)
	}
	return nil
}

// maxFrames is how many ticks of mix a recording of at most d holds.
func maxFrames(d time.Duration) uint64 {
	if d <= 0 {
		d = DefaultRecordingMaxDuration
	}
	return uint64((d + TickInterval - 1) / TickInterval)
}

// IsRecordingFile says whether name is a file name the bridge gives a
// recording: rec-, the 23 characters of an id, and a format's extension.
// Only such files are ever removed from the recordings directory as
// orphans.
func IsRecordingFile(name string) bool {
	id, ext, ok := strings.Cut(name, ".")
	if !ok || !strings.HasPrefix(id, RecordingPrefix) || len(id) != len(RecordingPrefix)+23 {
		return false
	}
	for _, c := range id[len(RecordingPrefix):] {
		if !strings.ContainsRune(idAlphabet, c) {
			return false
		}
	}
	f, err := recfile.ParseFormat(ext)
	return err == nil && ext != "" && f.Ext() == ext
}

// AdoptRecordingFiles reconciles the recordings directory with the
// records of an earlier run, at start and before traffic: owners maps
// each media name a record names to its user. A recording file of
// owners is counted against its user's quota; a recording file no record
// names — a crash between the file's creation and its first record
// left it — is removed, since nothing would ever serve, count or prune
// it. Files not of a recording's naming are never touched. It returns
// the files adopted and the names removed.
func (b *Bridge) AdoptRecordingFiles(owners map[string]string) (adopted int, removed []string, err error) {
	if b.cfg.RecordingsDir == "" {
		return 0, nil, nil
	}
	entries, err := os.ReadDir(b.cfg.RecordingsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil, nil // made on the first recording
	}
	if err != nil {
		return 0, nil, fmt.Errorf("adopt recording files: %w", err)
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !IsRecordingFile(name) {
			continue
		}
		if r, ok := b.RecordingByMedia(name); ok && r.Media() != "" {
			continue // this run's own, counted already
		}
		path := filepath.Join(b.cfg.RecordingsDir, name)
		if user, ok := owners[name]; ok {
			st, err := e.Info()
			if err != nil {
				errs = append(errs, fmt.Errorf("adopt %s: %w", name, err))
				continue
			}
			b.recUse.track(name, user, st.Size())
			adopted++
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove orphan recording file %s: %w", name, err))
			continue
		}
		b.log.Warn("recording file no record names removed (a crash before its first record)", "media", name)
		removed = append(removed, name)
	}
	return adopted, removed, errors.Join(errs...)
}

// DiskSpace returns the bytes an unprivileged writer may still use on the
// filesystem of dir, or of its nearest existing parent (the directory is
// made on the first recording), and the filesystem's size; ok is false
// when it cannot be told.
func DiskSpace(dir string) (free, size int64, ok bool) {
	for {
		if free, size, ok := statFree(dir); ok {
			return free, size, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return 0, 0, false
		}
		dir = parent
	}
}

// SetRecordingMaxDuration sets the longest the room's next recording
// may run (recordingMaxDuration); 0 is the default. A running one keeps
// its own.
func (c *Conference) SetRecordingMaxDuration(d time.Duration) { c.recMax.Store(int64(d)) }

// RecordingMaxDuration is the longest the room's next recording runs.
func (c *Conference) RecordingMaxDuration() time.Duration {
	if d := time.Duration(c.recMax.Load()); d > 0 {
		return d
	}
	return DefaultRecordingMaxDuration
}

// SetRecordingMaxDuration sets the longest the call's next recording may
// run (recordingMaxDuration); 0 is the default.
func (c *Call) SetRecordingMaxDuration(d time.Duration) {
	c.mu.Lock()
	c.recMax = d
	c.mu.Unlock()
}

// RecordingMaxDuration is the longest the call's next recording runs.
func (c *Call) RecordingMaxDuration() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.recMax > 0 {
		return c.recMax
	}
	return DefaultRecordingMaxDuration
}
