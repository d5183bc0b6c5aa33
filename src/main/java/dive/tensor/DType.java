package dive.tensor;

/** Element types of safetensors files. The engine computes with F32; F16/BF16 weights are widened on load into registers. */
public enum DType {
    BOOL(1), U8(1), I8(1), I16(2), U16(2), F16(2), BF16(2), I32(4), U32(4), F32(4), F64(8), I64(8), U64(8),
    F8_E4M3(1), F8_E5M2(1);

    /** bytes per element */
    public final int bytes;

    DType(int bytes) { this.bytes = bytes; }

    /** true for the floating types the engine's kernels read as weights */
    public boolean isFloatWeight() { return this == F32 || this == F16 || this == BF16; }

    /** the safetensors name of the type, e.g. "BF16" */
    public String safetensorsName() { return name(); }

    public static DType fromSafetensors(String name) {
        for (DType t : values()) if (t.name().equals(name)) return t;
        return null;
    }

    /** bfloat16 bits to float: the high half of an IEEE float */
    public static float bf16ToFloat(short bits) { return Float.intBitsToFloat((bits & 0xffff) << 16); }

    /** float to bfloat16 bits, round to nearest even (NaN kept a quiet NaN) */
    public static short floatToBf16(float f) {
        int x = Float.floatToRawIntBits(f);
        if ((x & 0x7fffffff) > 0x7f800000) return (short) ((x >>> 16) | 0x40);
        int rounding = 0x7fff + ((x >>> 16) & 1);
        return (short) ((x + rounding) >>> 16);
    }
}
