// Package health is the old system's health formula, kept so that scores
// mean what operators are used to, but fed with measurements of the worker's
// own process tree instead of the machine that sent the heartbeat.
package health

// Thresholds of the formula.
const (
	cpuHigh     = 80.0
	cpuElevated = 60.0
	memHigh     = 1 << 30   // 1 GiB
	memElevated = 512 << 20 // 512 MiB
)

// Score starts at 100 and takes off: 30 for CPU above 80% (15 above 60%),
// 30 for resident memory above 1 GiB (15 above 512 MiB), 40 for less than
// 10% of the allocated tokens left (20 for less than 25%); never below 0.
func Score(cpuPercent float64, rssBytes, tokensUsed, allocated int64) int {
	score := 100
	score -= []int{0, 15, 30}[CPUBand(cpuPercent)]
	score -= []int{0, 15, 30}[MemoryBand(rssBytes)]
	if allocated > 0 {
		left := allocated - tokensUsed
		switch {
		case left*10 < allocated:
			score -= 40
		case left*4 < allocated:
			score -= 20
		}
	}
	return max(score, 0)
}

// Band names a score: healthy (80 and up), degraded (50 and up), unhealthy.
func Band(score int) string {
	switch {
	case score >= 80:
		return "healthy"
	case score >= 50:
		return "degraded"
	}
	return "unhealthy"
}

// CPUBand is 0, 1 or 2 as CPU crosses the formula's thresholds.
func CPUBand(cpuPercent float64) int {
	switch {
	case cpuPercent > cpuHigh:
		return 2
	case cpuPercent > cpuElevated:
		return 1
	}
	return 0
}

// MemoryBand is 0, 1 or 2 as resident memory crosses the thresholds.
func MemoryBand(rssBytes int64) int {
	switch {
	case rssBytes > memHigh:
		return 2
	case rssBytes > memElevated:
		return 1
	}
	return 0
}

// TokenBand is 0, 1 or 2 as the tokens left of an allocation cross the
// formula's thresholds (below 25 %, below 10 %), and 3 once none are left;
// always 0 without an allocation.
func TokenBand(tokensUsed, allocated int64) int {
	if allocated <= 0 {
		return 0
	}
	switch left := allocated - tokensUsed; {
	case left <= 0:
		return 3
	case left*10 < allocated:
		return 2
	case left*4 < allocated:
		return 1
	}
	return 0
}
