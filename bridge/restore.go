package bridge

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"chorus/media/recfile"
)

// Restoring the records that outlive the process (issue 14): applications
// and phone numbers are configuration, not calls, so after a restart they
// come back from the store into the routing registry with their ids.
// Conferences, members and calls do not: calls cannot outlive the process,
// and their completed records are served from the store.

// RestoreApplication registers an application read back from the store,
// with its id and creation time. It is for start-up, before traffic.
func (b *Bridge) RestoreApplication(in ApplicationInfo) error {
	if !strings.HasPrefix(in.ID, ApplicationPrefix) || in.UserID == "" {
		return fmt.Errorf("restore application %q: not an application record", in.ID)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reg.apps[in.ID] = &Application{id: in.ID, userID: in.UserID, created: in.Created, opts: in.ApplicationOptions}
	return nil
}

// RestoreNumber registers a phone number read back from the store. A
// number already held (a corrupt store holding it twice) is an error.
func (b *Bridge) RestoreNumber(in NumberInfo) error {
	if !strings.HasPrefix(in.ID, NumberPrefix) || in.UserID == "" || in.Number == "" {
		return fmt.Errorf("restore number %q: not a number record", in.ID)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.reg.numByNum[in.Number]; ok {
		return fmt.Errorf("restore number %q: %w", in.Number, ErrNumberTaken)
	}
	n := &PhoneNumber{id: in.ID, userID: in.UserID, number: in.Number, created: in.Created, name: in.Name, appID: in.ApplicationID}
	b.reg.numByID[n.id] = n
	b.reg.numByNum[n.number] = n
	return nil
}

// Recordings outlive the process too: their records are served from the
// store, and their files from the recordings directory, by media name.

// errBadMediaName is a media name that cannot be a recording's file.
var errBadMediaName = errors.New("not a recording's media name")

// MediaPath returns the path of the recording file named name (a
// RecordingInfo's Media) in the recordings directory. A name that is not
// a recording's (a path, "..") is an error, so that a request can never
// reach another file.
func (b *Bridge) MediaPath(name string) (string, error) {
	if b.cfg.RecordingsDir == "" {
		return "", ErrRecordingDisabled
	}
	if !strings.HasPrefix(name, RecordingPrefix) || strings.ContainsAny(name, `/\`) || strings.Contains(name, "..") ||
		filepath.Base(name) != name {
		return "", fmt.Errorf("media %q: %w", name, errBadMediaName)
	}
	return filepath.Join(b.cfg.RecordingsDir, name), nil
}

// RemoveMedia removes the file of a recording no longer in memory (read
// back from a store); a file already gone is not an error.
func (b *Bridge) RemoveMedia(name string) error {
	path, err := b.MediaPath(name)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove media %s: %w", name, err)
	}
	b.recUse.release(name) // its bytes no longer count against the quota
	return nil
}

// CloseCrashedRecording ends a recording that a crash left in state
// recording: the writer died with the process, so the file holds what
// reached the disk. The recording ends in state error with cause; its
// end is the file's last write. A WAV file's header, whose sizes were
// only to be written at the end, gets them from the file's length, and
// an MP3 or Ogg file is cut at its last whole frame or page
// (recfile.Repair), so that any player reads it. A missing file leaves the recording without
// media. It is for start-up, before traffic.
func (b *Bridge) CloseCrashedRecording(in RecordingInfo, cause string) RecordingInfo {
	in.State, in.Error, in.End = RecordingError, cause, b.cfg.Now()
	if in.Media == "" {
		return in
	}
	path, err := b.MediaPath(in.Media)
	if err != nil {
		b.log.Warn("crashed recording's file not found", "recording", in.ID, "err", err)
		in.Media = ""
		return in
	}
	st, err := os.Stat(path)
	if err != nil {
		b.log.Warn("crashed recording's file not found", "recording", in.ID, "err", err)
		in.Media = ""
		return in
	}
	if mt := st.ModTime(); mt.After(in.Start) && mt.Before(in.End) {
		in.End = mt
	}
	in.Bytes = st.Size()
	// A WAV header gets its sizes; an MP3 or Ogg file that ends in part
	// of a frame or page is cut at its last whole one.
	n, err := recfile.Repair(in.Format, path)
	if err != nil {
		b.log.Warn("crashed recording's file not repaired", "recording", in.ID, "format", in.Format, "err", err)
	}
	in.Bytes = n
	return in
}
