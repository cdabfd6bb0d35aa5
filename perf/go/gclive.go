// gclive.go — perf/gclive.c in Go, for perf/pause-compare: a forest of LIVE_MIB complete
// binary trees of height 14 (32767 nodes of 32 bytes each, 1 MiB per tree), then THREADS
// mutator goroutines that each replace random subtrees of the trees they own (tree i
// belongs to goroutine i % THREADS) until they have allocated ROUNDS x their share of the
// live nodes.  Same random sequences (splitmix64) and same stdout as the C program, so the
// checksums can be compared across languages.  Run with GOMAXPROCS=2, GODEBUG=gctrace=1.
//
// usage: gclive [live_mib=1024] [rounds=4] [threads=2]
package main

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

const (
	height    = 14
	minHeight = 2
	treeNodes = int64(1)<<(height+1) - 1
)

type node struct {
	left, right *node
	val, spare  uint64 // 32 bytes, like the C node
}

func splitmix(s *uint64) uint64 {
	*s += 0x9E3779B97F4A7C15
	z := *s
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

func build(h int, seed *uint64) *node {
	n := &node{val: splitmix(seed)}
	if h > 0 {
		n.left = build(h-1, seed)
		n.right = build(h-1, seed)
	}
	return n
}

// check returns the nodes of a complete tree of height h, or -1; adds the values to *sum.
func check(n *node, h int, sum *uint64) int64 {
	if n == nil {
		return -1
	}
	*sum += n.val
	if h == 0 {
		if n.left != nil || n.right != nil {
			return -1
		}
		return 1
	}
	l := check(n.left, h-1, sum)
	r := check(n.right, h-1, sum)
	if l < 0 || r < 0 {
		return -1
	}
	return 1 + l + r
}

type mutator struct {
	id                 int
	ops, roots, errors int64
	allocated, checked uint64
}

func main() {
	args := []int64{1024, 4, 2}
	for i := 1; i < len(os.Args) && i <= 3; i++ {
		v, err := strconv.ParseInt(os.Args[i], 10, 64)
		if err != nil {
			args[i-1] = -1
		} else {
			args[i-1] = v
		}
	}
	liveMiB, rounds, nthreads := args[0], args[1], int(args[2])
	if liveMiB < 1 || liveMiB > 1<<20 || rounds < 0 || nthreads < 1 || nthreads > 16 {
		fmt.Fprintln(os.Stderr, "usage: gclive [live_mib=1024 (>= 1)] [rounds=4 (>= 0)] [threads=2 (1..16)]")
		os.Exit(2)
	}
	ntrees := liveMiB
	t0 := time.Now()
	forest := make([]*node, ntrees)
	for i := int64(0); i < ntrees; i++ {
		seed := uint64(i) * 0x100000001B3
		forest[i] = build(height, &seed)
	}
	t1 := time.Now()

	ms := make([]mutator, nthreads)
	var wg sync.WaitGroup
	for t := 0; t < nthreads; t++ {
		ms[t].id = t
		wg.Add(1)
		go func(m *mutator) {
			defer wg.Done()
			seed := uint64(0x5EED0000) + uint64(m.id)
			mine := (ntrees - int64(m.id) + int64(nthreads) - 1) / int64(nthreads)
			budget := uint64(rounds) * uint64(mine) * uint64(treeNodes)
			for mine > 0 && m.allocated < budget {
				r := splitmix(&seed)
				i := int64(m.id) + int64(nthreads)*int64(r%uint64(mine))
				h := minHeight + int((r>>32)%(height-minHeight+1))
				path := splitmix(&seed)
				subSeed := splitmix(&seed)
				var parent *node
				right := false
				old := forest[i]
				for d := height; d > h; d, path = d-1, path>>1 {
					parent = old
					right = path&1 != 0
					if right {
						old = parent.right
					} else {
						old = parent.left
					}
				}
				want := int64(1)<<(h+1) - 1
				if check(old, h, &m.checked) != want {
					if m.errors == 0 {
						fmt.Fprintf(os.Stderr, "gclive: goroutine %d op %d: subtree of height %d in tree %d is damaged\n", m.id, m.ops, h, i)
					}
					m.errors++
				}
				fresh := build(h, &subSeed)
				switch {
				case parent == nil:
					forest[i] = fresh
					m.roots++
				case right:
					parent.right = fresh
				default:
					parent.left = fresh
				}
				m.allocated += uint64(want)
				m.ops++
			}
		}(&ms[t])
	}
	wg.Wait()
	t2 := time.Now()

	var sum, checked, allocated uint64
	var nodes, ops, roots, errors int64
	for t := range ms {
		ops += ms[t].ops
		roots += ms[t].roots
		errors += ms[t].errors
		checked += ms[t].checked
		allocated += ms[t].allocated
	}
	for i := int64(0); i < ntrees; i++ {
		c := check(forest[i], height, &sum)
		if c != treeNodes {
			if errors == 0 {
				fmt.Fprintf(os.Stderr, "gclive: tree %d is damaged at the end\n", i)
			}
			errors++
		} else {
			nodes += c
		}
	}
	fmt.Printf("gclive live %d MiB rounds %d threads %d: %d ops, %d trees replaced, "+
		"%d nodes allocated, %d nodes live, checksum %016x %016x, %d errors\n",
		liveMiB, rounds, nthreads, ops, roots, allocated, nodes, sum, checked, errors)
	fmt.Fprintf(os.Stderr, "gclive-go live %d MiB rounds %d threads %d: build %.3f s, mutate %.3f s, total %.3f s\n",
		liveMiB, rounds, nthreads, t1.Sub(t0).Seconds(), t2.Sub(t1).Seconds(), time.Since(t0).Seconds())
	if errors != 0 {
		os.Exit(1)
	}
}
