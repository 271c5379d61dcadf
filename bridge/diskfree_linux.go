package bridge

import "syscall"

// statFree returns the bytes available to an unprivileged writer on the
// filesystem of path (statfs(2) f_bavail × f_bsize) and the filesystem's
// size (f_blocks × f_bsize).
func statFree(path string) (free, size int64, ok bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, 0, false
	}
	return int64(st.Bavail) * st.Bsize, int64(st.Blocks) * st.Bsize, true
}
