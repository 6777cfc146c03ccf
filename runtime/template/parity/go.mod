module oort/template-parity

go 1.24
