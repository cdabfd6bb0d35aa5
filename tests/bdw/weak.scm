;; Weak tables and guardians: what is still referenced must survive every collection; most of
;; what is not must go (a conservative collector may keep a few, so the test allows 10%).
(use-modules (ice-9 weak-vector))
(define n 20000)
(define keep (make-vector 100 #f))
(define wk (make-weak-key-hash-table))
(define wv (make-weak-value-hash-table))
(do ((i 0 (+ i 1))) ((= i n))
  (let ((k (list 'key i)) (v (make-string 8 #\v)))
    (hashq-set! wk k i)
    (hashv-set! wv i v)
    (when (< i 100) (vector-set! keep i (cons k v)))))
(define (churn) (do ((i 0 (+ i 1))) ((= i 200000)) (make-vector 4 i)))
(churn) (gc) (churn) (gc) (gc)
(define (size t) (hash-fold (lambda (k v acc) (+ acc 1)) 0 t))
(define live-k (size wk))
(define live-v (size wv))
(format #t "weak-key: referenced keys present ~a, most dropped ~a~%"
        (let loop ((i 0)) (or (= i 100) (and (eqv? (hashq-ref wk (car (vector-ref keep i))) i) (loop (+ i 1)))))
        (< live-k (/ n 10)))
(format #t "weak-value: referenced values present ~a, most dropped ~a~%"
        (let loop ((i 0)) (or (= i 100) (and (eq? (hashv-ref wv i) (cdr (vector-ref keep i))) (loop (+ i 1)))))
        (< live-v (/ n 10)))
;; The tag is held strongly: the symbol table is itself weak, and an object reachable only
;; from objects being finalized may lose its entry there (the Boehm GC clears such links
;; before finalization), which would make a fresh 'guarded a different symbol.
(define tag 'guarded)
(define g (make-guardian))
(do ((i 0 (+ i 1))) ((= i 5000)) (g (list tag i (make-string 4 #\g))))
(churn) (gc) (gc)
(define got (let loop ((acc '())) (let ((x (g))) (if x (loop (cons x acc)) acc))))
(format #t "guardian returned most ~a, intact ~a~%"
        (> (length got) 4500)
        (and-map (lambda (x) (and (eq? (car x) tag) (string=? (caddr x) "gggg"))) got))
(define wvec (make-weak-vector 1000 #f))
(do ((i 0 (+ i 1))) ((= i 1000)) (weak-vector-set! wvec i (if (< i 10) (vector-ref keep i) (list i))))
(churn) (gc) (gc)
(format #t "weak vector: kept ~a, cleared most ~a~%"
        (let loop ((i 0)) (or (= i 10) (and (eq? (weak-vector-ref wvec i) (vector-ref keep i)) (loop (+ i 1)))))
        (> (let loop ((i 10) (c 0)) (if (= i 1000) c (loop (+ i 1) (if (weak-vector-ref wvec i) c (+ c 1))))) 900))
