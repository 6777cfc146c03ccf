;; A hostile sink, written by hand: one component made of four core modules, each with its own
;; linear memory. At `open` it grows three of them to 62.5 MiB each, so every memory stays under
;; a 64 MiB limit while all of them together take four times as much. Otherwise it accepts every
;; call (the host counts what it collects as delivered).
(component
  ;; A memory of its own, and a way to grow it: traps when the growth is refused.
  (core module $Hoard
    (memory (export "memory") 1)
    (func (export "grow") (param $pages i32)
      (if (i32.eq (memory.grow (local.get $pages)) (i32.const -1))
        (then unreachable))))

  ;; The sink: its own memory (where the host writes the arguments) and the four calls.
  (core module $Main
    (import "h1" "grow" (func $grow1 (param i32)))
    (import "h2" "grow" (func $grow2 (param i32)))
    (import "h3" "grow" (func $grow3 (param i32)))
    (memory (export "memory") 1)
    ;; Bytes 0..64 stay zero: a pointer to them reads as `ok` of `result<_, sink-error>`.
    (global $heap (mut i32) (i32.const 64))
    ;; A bump allocator for the arguments the host passes; it never frees.
    (func (export "cabi_realloc")
      (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
      (local $ptr i32)
      (local.set $ptr
        (i32.and
          (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
          (i32.sub (i32.const 0) (local.get $align))))
      (global.set $heap (i32.add (local.get $ptr) (local.get $size)))
      (block $room
        (loop $more
          (br_if $room
            (i32.le_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536))))
          (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1))
            (then unreachable))
          (br $more)))
      (local.get $ptr))
    (func (export "configure")
      (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
      (i32.const 0))
    ;; 1 + 999 pages: 62.5 MiB for each of the three.
    (func (export "open") (result i32)
      (call $grow1 (i32.const 999))
      (call $grow2 (i32.const 999))
      (call $grow3 (i32.const 999))
      (i32.const 0))
    (func (export "collect") (param i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
      (i32.const 0))
    (func (export "close") (result i32)
      (i32.const 0)))

  (core instance $h1 (instantiate $Hoard))
  (core instance $h2 (instantiate $Hoard))
  (core instance $h3 (instantiate $Hoard))
  (core instance $main (instantiate $Main
    (with "h1" (instance $h1))
    (with "h2" (instance $h2))
    (with "h3" (instance $h3))))

  ;; The `oort:sink/types` the `sink` interface uses.
  (type $context (record
    (field "rule-id" string)
    (field "action" string)
    (field "instance" u32)
    (field "format" string)
    (field "generation" u32)))
  (type $sink-error (variant
    (case "invalid-config" string)
    (case "transient" string)
    (case "rejected" string)))
  (type $batch (record
    (field "payloads" (list u8))
    (field "ends" (list u32))
    (field "timestamps" (list s64))
    (field "header" (option string))))

  (func $configure (param "ctx" $context) (param "props" string) (result (result (error $sink-error)))
    (canon lift (core func $main "configure")
      (memory (core memory $main "memory")) (realloc (core func $main "cabi_realloc"))))
  (func $open (result (result (error $sink-error)))
    (canon lift (core func $main "open") (memory (core memory $main "memory"))))
  (func $collect (param "batch" $batch) (result (result (error $sink-error)))
    (canon lift (core func $main "collect")
      (memory (core memory $main "memory")) (realloc (core func $main "cabi_realloc"))))
  (func $close (result (result (error $sink-error)))
    (canon lift (core func $main "close") (memory (core memory $main "memory"))))

  ;; The exported interface names its types, as the component model asks of exports.
  (component $Sink
    (type $c (record
      (field "rule-id" string)
      (field "action" string)
      (field "instance" u32)
      (field "format" string)
      (field "generation" u32)))
    (import "import-type-context" (type $ic (eq $c)))
    (type $e (variant
      (case "invalid-config" string)
      (case "transient" string)
      (case "rejected" string)))
    (import "import-type-sink-error" (type $ie (eq $e)))
    (type $b (record
      (field "payloads" (list u8))
      (field "ends" (list u32))
      (field "timestamps" (list s64))
      (field "header" (option string))))
    (import "import-type-batch" (type $ib (eq $b)))
    (import "import-func-configure"
      (func $f-configure (param "ctx" $ic) (param "props" string) (result (result (error $ie)))))
    (import "import-func-open" (func $f-open (result (result (error $ie)))))
    (import "import-func-collect"
      (func $f-collect (param "batch" $ib) (result (result (error $ie)))))
    (import "import-func-close" (func $f-close (result (result (error $ie)))))
    (export $xc "context" (type $ic))
    (export $xe "sink-error" (type $ie))
    (export $xb "batch" (type $ib))
    (export "configure" (func $f-configure)
      (func (param "ctx" $xc) (param "props" string) (result (result (error $xe)))))
    (export "open" (func $f-open) (func (result (result (error $xe)))))
    (export "collect" (func $f-collect)
      (func (param "batch" $xb) (result (result (error $xe)))))
    (export "close" (func $f-close) (func (result (result (error $xe))))))

  (instance $sink (instantiate $Sink
    (with "import-type-context" (type $context))
    (with "import-type-sink-error" (type $sink-error))
    (with "import-type-batch" (type $batch))
    (with "import-func-configure" (func $configure))
    (with "import-func-open" (func $open))
    (with "import-func-collect" (func $collect))
    (with "import-func-close" (func $close))))
  (export "oort:sink/sink@0.1.0" (instance $sink)))
